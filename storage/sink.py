"""Write privacy-filtered events to ``beacon.events`` in batches."""
from __future__ import annotations

import time

import orjson

from beacon import metrics
from schemas.events import Event
from storage.clickhouse import DATABASE, ClickHouseStore

EVENTS_TABLE = f"{DATABASE}.events"


def encode_rows(events: list[Event]) -> bytes:
    """JSONEachRow: orjson serialises the dataclasses directly, so no Python-level
    per-field work sits on the insert path."""
    return b"\n".join(orjson.dumps(e) for e in events)


class EventSink:
    def __init__(self, store: ClickHouseStore):
        self.store = store

    def write(self, events: list[Event]) -> None:
        if not events:
            return
        started = time.perf_counter()
        self.store.insert_json_rows(EVENTS_TABLE, encode_rows(events))
        now = time.time()
        metrics.sink_batch_seconds.observe(time.perf_counter() - started)
        metrics.sink_rows.inc(len(events))
        metrics.last_event_time.set(max(e.ts for e in events))
        for e in events[:: max(1, len(events) // 100)]:  # a sample keeps the histogram cheap
            metrics.pipeline_latency.observe(now - e.ts)
