"""Kafka record formats.

``beacons.raw``: one record per collector micro-batch, key = batch id,
  value = ``{"v": 1, "batch_id": …, "events": [RawEvent, …]}`` (JSON). Holds full IPs:
  the topic's retention is at most 24 hours.
``beacons.clean``: one record per raw batch, key = the same batch id, value = the
  filtered rows as JSONEachRow (``storage.sink.encode_rows``), inserted as they are.
``beacons.dlq``: key = batch id, value = ``{"batch_id", "reason", "error", "record"}``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, fields

import orjson

from schemas.events import CONSENTS, Beacon, Consent, RawEvent, RequestContext

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class RawBatch:
    batch_id: str
    events: list[RawEvent]


def encode_raw_batch(batch: RawBatch) -> bytes:
    return orjson.dumps({"v": FORMAT_VERSION, "batch_id": batch.batch_id, "events": batch.events})


def decode_raw_batch(value: bytes) -> RawBatch:
    """Raises ValueError (or KeyError/TypeError) for a record that is not a v1 raw batch."""
    data = orjson.loads(value)
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        raise ValueError("not a v1 raw batch")
    return RawBatch(data["batch_id"], [_raw_event(e) for e in data["events"]])


def _raw_event(data: dict) -> RawEvent:
    # A record written before sites had zones has none: its site was in UTC.
    return RawEvent(data["event_id"], _beacon(data["beacon"]), _context(data["context"]), data.get("zone", "UTC"))


# ``Beacon(**fields)`` would be the obvious call, but orjson's key strings are not the
# interned names the dataclass's __init__ compares with, so CPython matches each
# keyword by string comparison against every parameter: 1.5 µs a beacon. The fields
# are passed by position instead, in ``schemas.events`` order, when the dict has
# exactly the fields ``encode_raw_batch`` writes (a record without some of them
# still decodes, with their defaults, through the keywords).
_BEACON_FIELDS = len(fields(Beacon))
_CONTEXT_FIELDS = len(fields(RequestContext))


def _beacon(b: dict) -> Beacon:
    if len(b) != _BEACON_FIELDS:
        b["consent"] = Consent(**b["consent"])  # freshly parsed for this call: ours to change
        return Beacon(**b)
    return Beacon(
        b["site"],
        b["url"],
        b["type"],
        b["name"],
        b["referrer"],
        b["props"],
        b["lang"],
        b["screen"],
        b["ts"],
        _consent(b["consent"]),
        b["device_id"],
        b["mac"],
        b["revenue_amount"],
        b["revenue_currency"],
    )


def _context(c: dict) -> RequestContext:
    if len(c) != _CONTEXT_FIELDS:
        return RequestContext(**c)
    return RequestContext(c["received_at"], c["ip"], c["user_agent"], c["accept_language"], c["dnt"], c["gpc"])


def _consent(c: dict) -> Consent:
    if len(c) == 3:  # then, if it has these three keys, it has no other one
        consent = CONSENTS.get((c.get("analytics"), c.get("device_id"), c.get("mac")))
        if consent is not None:
            return consent
    return Consent(**c)


def encode_dead_letter(batch_id: str, reason: str, error: str, record: bytes) -> bytes:
    return orjson.dumps(
        {"batch_id": batch_id, "reason": reason, "error": error[:500], "record": base64.b64encode(record).decode()}
    )
