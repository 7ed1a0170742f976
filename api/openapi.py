"""The OpenAPI 3.1 document of every ``/api/v1`` route (``GET /api/v1/openapi.json``).

Written out rather than generated from the handlers: it is what clients rely on,
and ``tests/test_stats_api.py`` checks the live server against it (schemathesis),
so a handler that drifts from it fails there.
"""

from __future__ import annotations

from typing import Any

from api import stats_params as params
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


_META = {
    "type": "object",
    "description": "The site's time zone, which cuts its days; timezone_from: the first "
    "day cut in it, when the period reaches back before the site took it (earlier days keep their cut).",
    "properties": {"timezone": {"type": "string"}, "timezone_from": {"type": "string", "format": "date"}},
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
        "source": {"type": "string", "description": "Where it was answered: the raw events (`beacon query-plan`)."},
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
            "description": "Stats API compatible with Plausible's Stats API v1, and the privacy API. "
            "Every route but this document needs `Authorization: Bearer <token>`: "
            "analyst for /stats, privacy for /privacy.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": _stats_paths()
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
