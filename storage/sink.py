"""Write privacy-filtered events to ``beacon.events`` in batches.

``write`` takes events (embedded mode); ``write_batches`` takes clean Kafka records,
already JSONEachRow, and skips any batch id already stored, so that a record
replayed after a crash is not counted twice.

Two kinds of failure, two answers. An outage (no connection, a timeout, a missing
table: anything but the codes of ``storage.dead_letters.refusal_reason``) is
waited out: the same INSERT is retried with back-off, because what was accepted
must be stored. A batch refused for its content (a value a column does not take, a
violated constraint) would be refused for ever, so it is split in halves until the
refused rows are alone; they become dead letters (``beacon dlq``) and the others
are stored. The split runs only after a refusal: the normal path is one INSERT.
"""
from __future__ import annotations

import logging
import time

import orjson

from common import metrics
from schemas.events import Event
from storage.clickhouse import DATABASE, ClickHouseStore, Store
from storage.dead_letters import DeadLetter, DeadLetters, DeadLetterTable, error_text, refusal_reason, row_fields

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
    def __init__(self, store: ClickHouseStore, dead_letters: DeadLetters | None = None):
        self.store = store
        # Kafka deployments give the dead-letter topic; the store's table otherwise.
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetterTable(store)
        self.healthy = True  # False while ClickHouse calls are failing (readiness)

    def write(self, events: list[Event]) -> None:
        """Insert events; blocks, retrying, until ClickHouse took them (or refused some)."""
        if events:
            self.write_rows(encode_rows(events), len(events), [e.ts for e in events[:: max(1, len(events) // 100)]])

    def write_rows(self, payload: bytes, count: int, sample_ts: list[float]) -> None:
        """Insert ``count`` JSONEachRow rows (arrival times of a sample, for the
        latency metric); blocks, retrying, until ClickHouse took them, or refused
        some, which become dead letters."""
        refusal = self._retry(lambda: self._insert_unless_refused(payload, count, sample_ts))
        if refusal is not None:
            self._set_aside_refused(payload.split(b"\n"), refusal)

    def write_batches(self, batches: list[tuple[str, bytes]]) -> int:
        """Insert the clean batches whose id is not stored yet; return rows inserted.
        Blocks, retrying, until ClickHouse took them (or refused some)."""
        unique = {batch_id: rows for batch_id, rows in batches if rows}
        if not unique:
            return 0
        first_ts = {batch_id: orjson.loads(rows.split(b"\n", 1)[0])["ts"] for batch_id, rows in unique.items()}
        since = min(first_ts.values())
        stored = self._retry(lambda: stored_batch_rows(self.store, list(unique), since))
        fresh = [batch_id for batch_id in unique if batch_id not in stored]
        # A batch stored in part was being split when its sink stopped (its refused
        # rows are dead letters, or become ones again): only its rows not stored go in.
        partial = [b for b, n in stored.items() if n < unique[b].count(b"\n") + 1]
        if stored:
            metrics.sink_duplicates_skipped.inc(len(stored) - len(partial))
        pieces = [unique[b] for b in fresh]
        if partial:
            pieces += self._retry(lambda: self._not_stored([line for b in partial for line in unique[b].split(b"\n")], since))
        if not pieces:
            return 0
        payload = b"\n".join(pieces)
        count = payload.count(b"\n") + 1
        refusal = self._retry(lambda: self._insert_unless_refused(payload, count, [first_ts[b] for b in fresh]))
        if refusal is not None:
            return count - self._set_aside_refused(payload.split(b"\n"), refusal)
        return count

    def _not_stored(self, lines: list[bytes], since: float) -> list[bytes]:
        event_ids = [str(row_fields(line).get("event_id", "")) for line in lines]
        stored = stored_event_ids(self.store, event_ids, since)
        return [line for line, event_id in zip(lines, event_ids) if event_id not in stored]

    def _insert(self, payload: bytes, count: int, sample_ts: list[float]) -> None:
        started = time.perf_counter()
        self.store.insert_json_rows(EVENTS_TABLE, payload)
        now = time.time()
        metrics.sink_batch_seconds.observe(time.perf_counter() - started)
        metrics.sink_rows.inc(count)
        if sample_ts:
            metrics.last_event_time.set(max(sample_ts))
        for ts in sample_ts:
            metrics.pipeline_latency.observe(now - ts)

    def _insert_unless_refused(self, payload: bytes, count: int, sample_ts: list[float]) -> Exception | None:
        """Insert; return the error when ClickHouse refused the rows for their content
        (raise any other: an outage, retried by the caller)."""
        try:
            self._insert(payload, count, sample_ts)
        except Exception as exc:
            if refusal_reason(exc) is None:
                raise
            return exc
        return None

    def _set_aside_refused(self, lines: list[bytes], refusal: Exception) -> int:
        """Store the rows ClickHouse takes, put the others in the dead letters; return
        how many were refused. Halving finds k refused rows among n with about
        2·k·log2(n) INSERTs; an INSERT is atomic, so a refused one stored nothing."""
        refused = self._split(lines, refusal)
        letters = [DeadLetter(line, refusal_reason(exc) or "", error_text(exc), _batch_id(line)) for line, exc in refused]
        self._retry(lambda: self.dead_letters.put(letters))
        for letter in letters:
            metrics.sink_dead_letters.labels(letter.reason).inc()
        log.warning("rows refused by the store set aside as dead letters",
                    extra={"rows": len(lines), "refused": len(letters), "reasons": sorted({lt.reason for lt in letters})})
        return len(letters)

    def _split(self, lines: list[bytes], refusal: Exception) -> list[tuple[bytes, Exception]]:
        if len(lines) == 1:
            return [(lines[0], refusal)]
        refused = []
        for half in (lines[: len(lines) // 2], lines[len(lines) // 2 :]):
            payload = b"\n".join(half)
            error = self._retry(lambda: self._insert_unless_refused(payload, len(half), []))
            if error is not None:
                refused += self._split(half, error)
        return refused

    def _retry(self, call, first_delay: float = 0.2, max_delay: float = 10.0):
        """Storage outages are waited out: what was accepted must be stored."""
        delay = first_delay
        while True:
            try:
                result = call()
                if not self.healthy:
                    self.healthy = True
                    metrics.sink_retrying.set(0)
                return result
            except Exception:
                self.healthy = False
                metrics.sink_retrying.set(1)
                metrics.sink_errors.inc()
                log.exception("clickhouse call failed; retrying", extra={"retry_in": delay})
                time.sleep(delay)
                delay = min(delay * 2, max_delay)


def stored_batch_rows(store: Store, batch_ids: list[str], since: float) -> dict[str, int]:
    """Rows stored per batch id, of those given (the rows of a batch arrive within
    ``_DEDUP_MARGIN_MS`` before ``since``, its first event's time)."""
    rows = store.rows(
        f"SELECT batch_id, count() FROM {EVENTS_TABLE} "
        "WHERE ts >= fromUnixTimestamp64Milli({since:Int64}) AND batch_id IN {ids:Array(String)} GROUP BY batch_id",
        {"since": int(since * 1000) - _DEDUP_MARGIN_MS, "ids": batch_ids},
    )
    return {batch_id: n for batch_id, n in rows}


def stored_event_ids(store: Store, event_ids: list[str], since: float) -> set[str]:
    """Those of ``event_ids`` stored (at ``since`` or later, less ``_DEDUP_MARGIN_MS``)."""
    return {event_id for (event_id,) in store.rows(
        f"SELECT toString(event_id) FROM {EVENTS_TABLE} "
        "WHERE ts >= fromUnixTimestamp64Milli({since:Int64}) AND toString(event_id) IN {ids:Array(String)}",
        {"since": int(since * 1000) - _DEDUP_MARGIN_MS, "ids": event_ids})}


def _batch_id(line: bytes) -> str:
    return str(row_fields(line).get("batch_id", ""))
