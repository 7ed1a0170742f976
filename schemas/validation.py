"""Turn request bodies into validated ``Beacon``s, or clear reasons why not.

The JSON Schema in ``schemas/beacon.v1.json`` is the single definition of a valid
beacon; it is compiled once, by jsonschema-rs (Rust): 1.5–3.4 µs a typical beacon,
where fastjsonschema's generated Python took 6–11 µs on the collector's busiest
line. What a schema cannot say (URL scheme, registered site) is checked here
after it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import jsonschema_rs
import orjson

from schemas.events import Beacon

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH = 50
MAX_MESSAGE = 200  # characters of an error message: it may quote the offending value

_SCHEMA = json.loads((resources.files("schemas") / "beacon.v1.json").read_text())
_BEACON = jsonschema_rs.validator_for(_SCHEMA)
_OPTOUT = jsonschema_rs.validator_for(
    {
        "$schema": _SCHEMA["$schema"],
        "type": "object",
        "properties": {k: _SCHEMA["properties"][k] for k in ("device_id", "mac")},
    }
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a beacon or a request was refused. ``reason`` is a closed word for metrics."""

    reason: str
    error: str
    field: str | None = None
    status: int = 400

    def body(self) -> dict:
        out = {"error": self.error}
        if self.field:
            out["field"] = self.field
        return out


def parse_json_body(body: bytes) -> list | dict | Rejection:
    try:
        data = orjson.loads(body)  # also rejects invalid UTF-8
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "utf-8" in str(exc).lower() else "invalid_json"
        return Rejection(reason, f"body is not valid JSON: {exc}")
    if isinstance(data, list):
        if not data:
            return Rejection("empty_batch", "a batch must hold at least one beacon")
        if len(data) > MAX_BATCH:
            return Rejection("batch_too_large", f"a batch holds at most {MAX_BATCH} beacons")
        return data
    if isinstance(data, dict):
        return data
    return Rejection("invalid_json", "body must be a JSON object or an array of objects")


def validate_beacon(data: object, registered_sites: frozenset[str]) -> Beacon | Rejection:
    if not isinstance(data, dict):
        return Rejection("invalid_type", "a beacon must be a JSON object")
    if rejection := _schema_check(_BEACON, data):
        return rejection
    if not _is_web_url(data["url"]):
        return Rejection("invalid_url", "url must be an absolute http(s) URL", "url")
    site = data["site"].lower()
    if site not in registered_sites:
        return Rejection("unknown_site", "site is not registered", "site")
    return Beacon.from_valid(data)


# The usual page URL, accepted without urlsplit (a cost on every beacon); anything
# else is decided by urlsplit.
_PLAIN_WEB_URL = re.compile(r"https?://[a-z0-9.-]*[a-z0-9](?::[0-9]{1,5})?(?:[/?#]|$)")


def _is_web_url(value: str) -> bool:
    if _PLAIN_WEB_URL.match(value):
        return True
    url = urlsplit(value)
    return url.scheme in ("http", "https") and bool(url.hostname)


def _schema_check(validator: jsonschema_rs.Validator, data: dict) -> Rejection | None:
    """None when ``data`` is valid. jsonschema-rs raises ValueError for a value nested
    deeper than it converts (about 256 levels; orjson itself stops at 1,024)."""
    try:
        if validator.is_valid(data):  # the why is worked out only for what fails
            return None
        return _schema_rejection(validator, data)
    except ValueError:
        return Rejection("too_deep", "a value is nested too deep", _deepest_field(data))


def _deepest_field(data: dict) -> str | None:
    depths = {key: _depth(value) for key, value in data.items()}
    return max(depths, key=depths.__getitem__) if depths else None


def _depth(value: object) -> int:
    """How many containers are nested in ``value`` (iterative: the value is too deep to recurse)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _schema_rejection(validator: jsonschema_rs.Validator, data: dict) -> Rejection:
    """The first thing wrong: its message, and the field it is about ("props.k";
    for a missing property, that property)."""
    error = next(validator.iter_errors(data))
    path = [str(p) for p in error.instance_path]
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
        path.append(error.kind.property)
    return Rejection("schema", _shortened(error.message), ".".join(path) or None)


def _shortened(message: str) -> str:
    # The message quotes the value ("<a 3,000-character URL> is longer than 2048
    # characters"): keep its beginning and its end, which says what is wrong.
    if len(message) <= MAX_MESSAGE:
        return message
    half = (MAX_MESSAGE - 3) // 2  # and " … " between
    return f"{message[:half]} … {message[-half:]}"


def validate_optout(data: object) -> tuple[str, str] | Rejection:
    """(device_id, mac) of an objection, validated like the beacon's own fields."""
    if not isinstance(data, dict):
        return Rejection("invalid_type", "an opt-out must be a JSON object")
    ids = {k: data[k] for k in ("device_id", "mac") if k in data}
    if not ids:
        return Rejection("schema", "name the device_id or the mac that objects", "device_id")
    if rejection := _schema_check(_OPTOUT, ids):
        return rejection
    return ids.get("device_id", ""), ids.get("mac", "")
