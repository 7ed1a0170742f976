"""The OpenAPI 3.1 document of every ``/api/v1`` and ``/api/v2`` route (``GET /api/v1/openapi.json``).

Written out rather than generated from the handlers: it is what clients rely on,
and ``tests/test_stats_api.py`` and ``tests/test_api_v2.py`` check the live server
against it (schemathesis),
so a handler that drifts from it fails there.
"""

from __future__ import annotations

from typing import Any

from api import stats_params as params
from api import v2_query
from api.app import Route
from queries.metrics import METRICS
from queries.properties import CATALOGUE
from web.messages import Response

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}, "field": {"type": "string"}},
}
_NUMBER = {"type": ["number", "null"]}


def _query(name: str, description: str, schema: dict, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_SITE = _query(
    "site_id",
    "The site's domain, as registered (`beacon sites add`).",
    {"type": "string", "minLength": 1},
    required=True,
)
_PERIOD = _query("period", "Time range; default 30d.", {"type": "string", "enum": list(params.PERIODS)})
_DATE = _query(
    "date",
    "YYYY-MM-DD anchoring the period (UTC); for period=custom, YYYY-MM-DD,YYYY-MM-DD.",
    {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}(,\s*\d{4}-\d{2}-\d{2})?$"},
)
_FILTERS = _query(
    "filters",
    "property==value, property!=value or property~value (contains); a|b for alternatives; ';' between filters.",
    {"type": "string"},
)
_WITH_IMPORTED = _query(
    "with_imported",
    "true: add the site's imported figures (beacon import plausible) where one imported table holds the "
    "query's properties and metrics, goals included (meta says which days, or why not).",
    {"type": "string", "enum": ["true", "false"]},
)


def _metrics() -> dict:
    """The metrics parameter, from the registry (``queries.metrics``)."""
    named = " ".join(f"`{m.name}`: {m.description}" for m in METRICS.values())
    return _query("metrics", f"Comma-separated names; default visitors. {named}", {"type": "string"})


def _property() -> dict:
    """The breakdown property parameter, from the registry (``queries.properties``)."""
    return _query(
        "property",
        "Breakdown property: " + ", ".join(CATALOGUE) + ", or event:props:KEY.",
        {"type": "string"},
        required=True,
    )


def _responses(ok: dict, description: str) -> dict:
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "200": {"description": description, "content": {"application/json": {"schema": ok}}},
        "400": {"description": "A parameter is wrong; `parameter` names it.", **error},
        "401": {"description": "No token, or an unknown or revoked one.", **error},
        "403": {"description": "The token may not read this site, or lacks the analyst role.", **error},
        "404": {"description": "No such registered site.", **error},
        "503": {"description": "The token list cannot be read; retry.", **error},
    }


_IMPORTED_DAYS = {
    "type": "object",
    "properties": {"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}},
}
_META = {
    "type": "object",
    "description": "The site's time zone, which cuts its days; timezone_from: the first "
    "day cut in it, when the period reaches back before the site took it (earlier days keep their cut). "
    "With with_imported=true: imports_included, and imported_days (the days an import added to) or "
    "imports_skip_reason (no_imported_data, out_of_range, unsupported_interval, unsupported_query).",
    "properties": {
        "timezone": {"type": "string"},
        "timezone_from": {"type": "string", "format": "date"},
        "imports_included": {"type": "boolean"},
        "imports_skip_reason": {"type": "string"},
        "imported_days": _IMPORTED_DAYS,
    },
}


def _results(items: dict) -> dict:
    return {"type": "object", "required": ["results"], "properties": {"results": items, "meta": _META}}


_ROW = {"type": "object", "additionalProperties": {"type": ["number", "string", "null"]}}


def _stats_paths() -> dict[str, Any]:
    aggregate_value = {
        "type": "object",
        "required": ["value"],
        "properties": {"value": _NUMBER, "comparison_value": _NUMBER, "change": _NUMBER},
    }
    return {
        "/api/v1/stats/realtime/visitors": {
            "get": {
                "summary": "Visitors in the last 5 minutes",
                "operationId": "realtimeVisitors",
                "parameters": [_SITE],
                "responses": _responses({"type": "integer", "minimum": 0}, "A bare number."),
            }
        },
        "/api/v1/stats/aggregate": {
            "get": {
                "summary": "Metrics over a period",
                "operationId": "aggregate",
                "parameters": [
                    _SITE,
                    _PERIOD,
                    _DATE,
                    _metrics(),
                    _FILTERS,
                    _WITH_IMPORTED,
                    _query(
                        "compare",
                        "previous_period adds comparison_value and change.",
                        {"type": "string", "enum": ["previous_period"]},
                    ),
                ],
                "responses": _responses(
                    _results({"type": "object", "additionalProperties": aggregate_value}), "One entry per metric."
                ),
            }
        },
        "/api/v1/stats/timeseries": {
            "get": {
                "summary": "Metrics per hour (period=day), day or month",
                "operationId": "timeseries",
                "parameters": [
                    _SITE,
                    _PERIOD,
                    _DATE,
                    _metrics(),
                    _FILTERS,
                    _WITH_IMPORTED,
                    _query("interval", "date or month.", {"type": "string", "enum": list(params.INTERVALS)}),
                ],
                "responses": _responses(
                    _results(
                        {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["date"],
                                "properties": {"date": {"type": "string"}},
                                "additionalProperties": _NUMBER,
                            },
                        }
                    ),
                    "One entry per bucket, every bucket present.",
                ),
            }
        },
        "/api/v1/stats/breakdown": {
            "get": {
                "summary": "Metrics per value of a property, top first",
                "operationId": "breakdown",
                "parameters": [
                    _SITE,
                    _PERIOD,
                    _DATE,
                    _metrics(),
                    _FILTERS,
                    _WITH_IMPORTED,
                    _property(),
                    _query(
                        "limit",
                        "Rows per page, 1-1000; default 100.",
                        {"type": "integer", "minimum": 1, "maximum": params.MAX_LIMIT},
                    ),
                    _query("page", "Page number, from 1.", {"type": "integer", "minimum": 1}),
                ],
                "responses": _responses(_results({"type": "array", "items": _ROW}), "One entry per value."),
            }
        },
    }


def _v2_request() -> dict:
    """Plausible's v2 request (docs/api-v2.md); what a schema cannot say (a known
    dimension in a filter, a range in order) gets a 400 with Plausible's words."""
    dimensions = ["time", *v2_query.TIME_DIMENSIONS, *CATALOGUE]
    return {
        "type": "object",
        "required": ["site_id", "metrics", "date_range"],
        "additionalProperties": False,
        "properties": {
            "site_id": {"type": "string", "minLength": 1, "description": "The site's domain, as registered."},
            "metrics": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "enum": list(METRICS)},
            },
            "date_range": {
                "description": "A named range, or [from, to]: two ISO dates, or two ISO datetimes "
                "(without an offset: the site's wall clock).",
                "oneOf": [
                    {"type": "string", "enum": list(v2_query.NAMED_RANGES)},
                    {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"}},
                ],
            },
            "dimensions": {
                "type": "array",
                "uniqueItems": True,
                "description": "Any of " + ", ".join(dimensions) + ", or event:props:KEY; one time dimension at most.",
                "items": {"type": "string"},
            },
            "filters": {
                "type": "array",
                "description": "[operator, dimension, [values], {case_sensitive}] with operator one of "
                + ", ".join(v2_query.OPERATORS)
                + "; [and|or, [filters]]; [not, filter]; at the top level [has_done|has_not_done, filter].",
                "items": {"type": "array"},
            },
            "order_by": {
                "type": "array",
                "items": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "prefixItems": [{"type": "string"}, {"type": "string", "enum": ["asc", "desc"]}],
                },
            },
            "include": {
                "type": "object",
                "additionalProperties": False,
                "properties": {k: {"type": "boolean"} for k in v2_query.INCLUDES}
                | {
                    "comparisons": {
                        "type": "object",
                        "required": ["mode"],
                        "additionalProperties": False,
                        "description": "Each row with its counterpart in another range (Plausible's comparisons); "
                        "custom takes date_range: two ISO dates.",
                        "properties": {
                            "mode": {"type": "string", "enum": list(v2_query.COMPARISONS)},
                            "date_range": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"}},
                            "match_day_of_week": {"type": "boolean"},
                        },
                    }
                },
            },
            "pagination": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "limit": {"type": "integer", "minimum": 1, "maximum": v2_query.MAX_LIMIT},
                    "offset": {"type": "integer", "minimum": 0},
                },
            },
        },
    }


def _v2_paths() -> dict[str, Any]:
    row = {
        "type": "object",
        "required": ["metrics", "dimensions"],
        "properties": {
            "metrics": {"type": "array", "items": _NUMBER},
            "dimensions": {"type": "array", "items": {"type": "string"}},
            "comparison": {
                "type": "object",
                "description": "With include.comparisons: the row's counterpart in the range compared with.",
                "properties": {
                    "metrics": {"type": "array", "items": _NUMBER},
                    "dimensions": {"type": "array", "items": {"type": "string"}},
                    "change": {"type": "array", "items": _NUMBER},
                },
            },
        },
    }
    answer = {
        "type": "object",
        "required": ["results", "meta", "query"],
        "properties": {
            "results": {"type": "array", "items": row},
            "meta": {
                "type": "object",
                "properties": {
                    "imports_included": {"type": "boolean"},
                    "imports_skip_reason": {"type": "string"},
                    "imported_days": _IMPORTED_DAYS,
                    "time_labels": {"type": "array", "items": {"type": "string"}},
                    "comparison_time_labels": {"type": "array", "items": {"type": "string"}},
                    "total_rows": {"type": "integer", "minimum": 0},
                },
            },
            "query": {
                "type": "object",
                "description": "The query as understood: ranges as datetimes, defaults filled.",
            },
        },
    }
    responses = _responses(answer, "One row per group: its metrics, in the order asked, and its dimensions.")
    responses["400"]["description"] = "An invalid query; `error` says why, in Plausible's words where it has them."
    responses["413"] = {
        "description": "The body is too large.",
        "content": {"application/json": {"schema": _ERROR}},
    }
    body = {"required": True, "content": {"application/json": {"schema": _v2_request()}}}
    return {
        "/api/v2/query": {
            "post": {
                "summary": "Plausible's Stats API v2 query",
                "operationId": "query_v2",
                "requestBody": body,
                "responses": responses,
            }
        }
    }


_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_COUNT = {"type": "integer", "minimum": 0}
_FUNNEL_STEP = {
    "type": "object",
    "required": ["label", "visitors", "conversion_rate", "conversion_rate_step", "dropoff", "dropoff_percentage"],
    "properties": {
        "label": {"type": "string", "description": "The event name, or Visit /path."},
        "visitors": {**_COUNT, "description": "Visitors who did this step and every one before it, in order."},
        "conversion_rate": {**_PERCENT, "description": "% of the first step's visitors."},
        "conversion_rate_step": {**_PERCENT, "description": "% of the previous step's visitors."},
        "dropoff": {**_COUNT, "description": "The previous step's visitors who did not reach this one."},
        "dropoff_percentage": {**_PERCENT, "description": "dropoff as a % of the previous step's visitors."},
    },
}
_FUNNEL = {
    "type": "object",
    "required": ["name", "steps", "all_visitors", "entering_visitors", "never_entering_visitors"],
    "properties": {
        "name": {"type": "string"},
        "steps": {"type": "array", "minItems": 2, "maxItems": 8, "items": _FUNNEL_STEP},
        "all_visitors": {**_COUNT, "description": "Visitors of the visits that pass the filters."},
        "entering_visitors": _COUNT,
        "entering_visitors_percentage": _PERCENT,
        "never_entering_visitors": _COUNT,
        "never_entering_visitors_percentage": _PERCENT,
    },
}

_FUNNEL_META = {
    **_META,
    "properties": {
        **_META["properties"],
        "source": {
            "type": "string",
            "enum": ["aggregates", "events"],
            "description": "Where it was answered (`beacon query-plan`): `aggregates`, the built visits' sequences "
            "of pages and events (and the events of the visits still open); `events`, the raw events only.",
        },
    },
}
_FUNNEL_ANSWER = {"type": "object", "required": ["results"], "properties": {"results": _FUNNEL, "meta": _FUNNEL_META}}


def _funnel_path() -> dict[str, Any]:
    return {
        "/api/v1/stats/funnel": {
            "get": {
                "summary": "A funnel's visitors per step, conversion and drop-off",
                "description": "Visitors who did the funnel's steps in order within one visit (30 minutes "
                "of inactivity, never across the site's midnight). Page and event filters choose the "
                "events that may complete a step; visit filters choose the visits.",
                "operationId": "funnel",
                "parameters": [
                    _SITE,
                    _PERIOD,
                    _DATE,
                    _query(
                        "funnel",
                        "The funnel's name (`beacon funnels add SITE NAME --step …`).",
                        {"type": "string", "minLength": 1},
                        required=True,
                    ),
                    _FILTERS,
                ],
                "responses": _responses(_FUNNEL_ANSWER, "The funnel's steps, in order."),
            }
        }
    }


def _privacy_paths() -> dict[str, Any]:
    subject = {"type": "object", "properties": {"device_id": {"type": "string"}, "mac": {"type": "string"}}}
    body = {"required": True, "content": {"application/json": {"schema": subject}}}
    out = {}
    for action, summary in (
        ("export", "A data subject's rows (JSON, or ?format=jsonl|csv as a file)"),
        ("erase", "Delete a data subject's rows, and stop collecting them"),
        ("optout", "Stop collecting a data subject's events"),
    ):
        out[f"/api/v1/privacy/{action}"] = {
            "post": {
                "summary": summary,
                "operationId": f"privacy_{action}",
                "requestBody": body,
                "responses": _responses({"type": "object"}, "Done."),
            }
        }
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "beacon API",
            "version": "1",
            "description": "Stats API compatible with Plausible's Stats API v1 and v2, and the privacy API. "
            "Every route but this document needs `Authorization: Bearer <token>`: "
            "analyst for /stats and /api/v2/query, privacy for /privacy.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": _stats_paths()
        | _v2_paths()
        | _funnel_path()
        | _privacy_paths()
        | {
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }


def routes() -> list[Route]:
    body = Response.json(200, document()).body

    async def serve(request, token) -> Response:
        return Response(200, body, [(b"content-type", b"application/json")])

    return [Route("GET", "/api/v1/openapi.json", "openapi", None, serve)]
