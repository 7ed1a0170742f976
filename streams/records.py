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
from dataclasses import dataclass

import orjson

from schemas.events import Beacon, Consent, RawEvent, RequestContext

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
    beacon = data["beacon"]  # freshly parsed for this call: ours to change
    beacon["consent"] = Consent(**beacon["consent"])
    return RawEvent(data["event_id"], Beacon(**beacon), RequestContext(**data["context"]))


def encode_dead_letter(batch_id: str, reason: str, error: str, record: bytes) -> bytes:
    return orjson.dumps({"batch_id": batch_id, "reason": reason, "error": error[:500],
                         "record": base64.b64encode(record).decode()})
