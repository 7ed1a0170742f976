"""Plausible's Events API (``POST /api/event``) in beacon's terms.

A site that runs Plausible's tracker switches to beacon by pointing the tracker's
endpoint at ``/api/event``. Each Plausible event becomes beacon v1 dicts (one per
site of its ``domain`` list), which then go through the same validation, privacy
filter and storage as ``POST /collect``. Nothing here does I/O.

Answers, as Plausible's own code gives them (docs/tracker.md has the full mapping):
  202 ``ok`` (text)                         accepted; with ``x-plausible-dropped: N``
                                             when N of the event's sites were refused
  400 ``{"errors": {"field": ["msg"]}}``    the event is invalid (field in Plausible's names)
The collector's other answers keep their /collect meaning: 403 foreign origin,
413 too large, 415 content type, 503 + Retry-After overloaded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from schemas.validation import MAX_BATCH, Rejection
from web.messages import Response

MAX_NAME = 120  # characters, as Plausible and beacon.v1.json
MAX_URL = 2048  # beacon.v1.json's limit; Plausible cuts its referrer to 2,000
MAX_SITES = MAX_BATCH  # a comma list of domains is a batch of beacons: the same bound
MAX_ENGAGED_MS = 30 * 24 * 3600 * 1000  # Plausible refuses an engagement time of 30 days or more

# beacon.v1.json field → the Plausible field an error is reported under.
_PLAUSIBLE_FIELD = {
    "site": "domain",
    "type": "name",
    "name": "name",
    "url": "url",
    "referrer": "referrer",
    "props": "props",
    "revenue": "revenue",
}


def to_beacons(data: Any) -> list[dict] | Rejection:
    """The beacon v1 dicts for one Plausible event (short or long keys), or why not."""
    if not isinstance(data, dict):
        return _invalid("request", "must be one event, a JSON object", "invalid_type")
    name = _name(_first(data, "n", "name"))
    if isinstance(name, Rejection):
        return name
    url = _first(data, "u", "url")
    if not isinstance(url, str) or not url.strip():
        return _invalid("url", "is required")
    if url.lower().startswith("data:"):
        return _invalid("url", "is invalid")
    sites = _sites(_first(data, "d", "domain"), url)
    if isinstance(sites, Rejection):
        return sites
    props = _props(_first(data, "p", "props", "m", "meta"))
    if isinstance(props, Rejection):
        return props
    beacon: dict[str, Any] = {"url": url}
    if name == "pageview":
        beacon["type"] = "pageview"
    else:
        beacon["type"], beacon["name"] = "event", name
    if name == "engagement":
        engagement = _engagement(data)
        if isinstance(engagement, Rejection):
            return engagement
        props |= engagement
    referrer = _first(data, "r", "referrer")
    if isinstance(referrer, str) and referrer:
        beacon["referrer"] = referrer[:MAX_URL]
    if props:
        beacon["props"] = props
    revenue = _first(data, "$", "revenue")
    if revenue is not None:
        # Plausible drops a bad revenue and still stores the event; beacon refuses it (400),
        # so a shop's broken checkout tag shows up in the rejects rather than as lost money.
        beacon["revenue"] = revenue
    if _first(data, "h", "hashMode") in (1, True):
        beacon["hash"] = True  # the fragment is the route (beacon.v1.json ignores the key until it knows it)
    return [beacon | {"site": site} for site in sites]


def errors_body(rejection: Rejection) -> dict:
    """Plausible's 400 body for a rejection: ``{"errors": {field: [message]}}``."""
    field = (rejection.field or "request").split(".", 1)[0]
    return {"errors": {_PLAUSIBLE_FIELD.get(field, field): [rejection.error]}}


def accepted(dropped: int, headers: list[tuple[bytes, bytes]]) -> Response:
    """202 ``ok``; ``dropped`` counts the event's sites that were refused."""
    extra = [(b"x-plausible-dropped", b"%d" % dropped)] if dropped else []
    return Response(202, b"ok", [(b"content-type", b"text/plain; charset=utf-8")] + extra + headers)


def refused(rejection: Rejection, headers: list[tuple[bytes, bytes]]) -> Response:
    """A 400 in Plausible's shape; other statuses (403, 413, 415) as /collect gives them."""
    body = errors_body(rejection) if rejection.status == 400 else rejection.body()
    return Response.json(rejection.status, body, headers)


# --- fields ------------------------------------------------------------------------


def _first(data: dict, *keys: str) -> Any:
    """The value of the first key present: Plausible reads short keys before long ones."""
    for key in keys:
        if key in data:
            return data[key]
    return None


def _name(value: Any) -> str | Rejection:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # Plausible takes a number as a name
    if not isinstance(value, str) or not value.strip():
        return _invalid("name", "is required")
    if len(value) > MAX_NAME:
        return _invalid("name", f"should be at most {MAX_NAME} characters")
    return value


def _sites(value: Any, url: str) -> list[str] | Rejection:
    """The sites of a ``domain`` value: a comma list (one event per site), or, when
    it is absent, the URL's host without ``www.``, as Plausible does."""
    if value is None:
        host = _host(url)
        return [host.removeprefix("www.")] if host else _invalid("domain", "is required")
    if not isinstance(value, str):
        return _invalid("domain", "is invalid")
    sites = list(dict.fromkeys(s.strip().lower() for s in value.split(",") if s.strip()))
    if not sites:
        return _invalid("domain", "can't be blank")
    if len(sites) > MAX_SITES:
        return _invalid("domain", f"lists at most {MAX_SITES} sites")
    return sites


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        return ""


def _props(value: Any) -> dict | Rejection:
    """Custom properties: an object, or an object in a JSON string. As Plausible
    does, values that are lists, objects, null or blank are left out."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return _invalid("props", "is not a JSON object")
    if not isinstance(value, dict):
        return _invalid("props", "is not a JSON object")
    return {
        k: v
        for k, v in value.items()
        if isinstance(v, (str, int, float)) and not (isinstance(v, str) and not v.strip())
    }


def _engagement(data: dict) -> dict | Rejection:
    """An engagement's ``e`` (engaged milliseconds) and ``sd`` (scroll depth %) as
    props; Plausible refuses one with neither valid."""
    props: dict[str, int] = {}
    engaged, depth = data.get("e"), data.get("sd")
    if _is_int(engaged) and 0 <= engaged < MAX_ENGAGED_MS:
        props["engaged_ms"] = engaged
    if _is_int(depth) and depth >= 0:
        props["scroll_depth"] = min(depth, 100)
    return props or _invalid("engagement", "needs e (engaged milliseconds) or sd (scroll depth)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(field: str, message: str, reason: str = "schema") -> Rejection:
    return Rejection(reason, message, field)
