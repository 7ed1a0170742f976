"""Write privacy-filtered events to ``beacon.events`` in batches.

``write`` takes events (embedded mode); ``write_batches`` takes clean Kafka records,
already JSONEachRow, and skips any batch id already stored, so that a record
replayed after a crash is not counted twice.
"""
from __future__ import annotations

import logging
import time

import orjson

from common import metrics
from schemas.events import Event
from storage.clickhouse import DATABASE, ClickHouseStore

log = logging.getLogger("beacon.sink")

EVENTS_TABLE = f"{DATABASE}.events"
# How far before a batch's first event the duplicate lookup starts: rows of one
# micro-batch arrive within its linger time.
_DEDUP_MARGIN_MS = 60_000


# Where one row ends and the next begins in orjson's JSON array of events, and only
# there: ``event_id`` is an Event's first field, and inside a JSON string every ``"``
# is escaped, so no value can contain this.
_ROW_BOUNDARY = b'},{"event_id":'


def encode_rows(events: list[Event]) -> bytes:
    """JSONEachRow: orjson serialises the dataclasses directly, so no Python-level
    per-field work sits on the insert path. One call for the whole list, cut into
    lines, costs half as much as a call per row: each row's own buffer made glibc
    hand memory back to the kernel and fault it in again (~2 page faults a row)."""
    return orjson.dumps(events)[1:-1].replace(_ROW_BOUNDARY, b'}\n{"event_id":')


class EventSink:
    def __init__(self, store: ClickHouseStore):
        self.store = store
        self.healthy = True  # False while ClickHouse calls are failing (readiness)

    def write(self, events: list[Event]) -> None:
        """Insert events; blocks, retrying, until ClickHouse took them."""
        if events:
            self.write_rows(encode_rows(events), len(events), [e.ts for e in events[:: max(1, len(events) // 100)]])

    def write_rows(self, payload: bytes, count: int, sample_ts: list[float]) -> None:
        """Insert ``count`` JSONEachRow rows (arrival times of a sample, for the
        latency metric); blocks, retrying, until ClickHouse took them."""
        self._retry(lambda: self._insert(payload, count, sample_ts))

    def write_batches(self, batches: list[tuple[str, bytes]]) -> int:
        """Insert the clean batches whose id is not stored yet; return rows inserted.
        Blocks, retrying, until ClickHouse took them."""
        unique = {batch_id: rows for batch_id, rows in batches if rows}
        if not unique:
            return 0
        first_ts = {batch_id: orjson.loads(rows.split(b"\n", 1)[0])["ts"] for batch_id, rows in unique.items()}
        stored = self._retry(lambda: self._stored_batch_ids(list(unique), min(first_ts.values())))
        fresh = [batch_id for batch_id in unique if batch_id not in stored]
        if stored:
            metrics.sink_duplicates_skipped.inc(len(unique) - len(fresh))
        if not fresh:
            return 0
        payload = b"\n".join(unique[b] for b in fresh)
        count = payload.count(b"\n") + 1
        self._retry(lambda: self._insert(payload, count, [first_ts[b] for b in fresh]))
        return count

    def _stored_batch_ids(self, batch_ids: list[str], since: float) -> set[str]:
        rows = self.store.rows(
            f"SELECT DISTINCT batch_id FROM {EVENTS_TABLE} "
            "WHERE ts >= fromUnixTimestamp64Milli({since:Int64}) AND batch_id IN {ids:Array(String)}",
            {"since": int(since * 1000) - _DEDUP_MARGIN_MS, "ids": batch_ids},
        )
        return {batch_id for (batch_id,) in rows}

    def _insert(self, payload: bytes, count: int, sample_ts: list[float]) -> None:
        started = time.perf_counter()
        self.store.insert_json_rows(EVENTS_TABLE, payload)
        now = time.time()
        metrics.sink_batch_seconds.observe(time.perf_counter() - started)
        metrics.sink_rows.inc(count)
        metrics.last_event_time.set(max(sample_ts))
        for ts in sample_ts:
            metrics.pipeline_latency.observe(now - ts)

    def _retry(self, call, first_delay: float = 0.2, max_delay: float = 10.0):
        """Storage outages are waited out: what was accepted must be stored."""
        delay = first_delay
        while True:
            try:
                result = call()
                self.healthy = True
                return result
            except Exception:
                self.healthy = False
                metrics.sink_errors.inc()
                log.exception("clickhouse call failed; retrying", extra={"retry_in": delay})
                time.sleep(delay)
                delay = min(delay * 2, max_delay)
