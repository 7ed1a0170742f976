"""Write privacy-filtered events to ``beacon.events`` in batches, each stored once.

``write`` takes events (embedded mode); ``write_batches`` takes clean Kafka records,
already JSONEachRow, one collector micro-batch each, keyed by its batch id.

Exactly once, by ClickHouse itself. Every INSERT carries an
``insert_deduplication_token``; ``beacon.events`` and the table its materialized
view fills keep the tokens of their last 10,000 blocks (migration 0013), and drop a
block whose token they have seen, atomically, in chDB and on a server alike. A
token must name exactly the same rows every time it is used:

* Kafka (``write_batches``): one INSERT holds several records, so its token is a
  hash of the sorted batch ids it holds (``batches_token``), and the rows go in in
  that order. Two sinks (a rebalance) or a retry that raced a slow INSERT with the
  same records send the same token, and the second INSERT is dropped.
* Embedded (``write_rows``): the rows of a ``RowBuffer`` drain have no id (they
  live in memory only, and are lost with the process), but an INSERT that timed
  out may still have been stored, on a server, when it is retried: the drain gets
  a random token, and every retry of it sends the same one.
* A batch refused for its content is split in halves (below); a half's token is
  its parent's with the half's row range, ``TOKEN:lo-hi``, so a split run again on
  the same rows stores no half twice.

The engine only sees tokens, so it cannot help when the same records come back
grouped differently: a sink that died after its INSERT, before Kafka had its
offsets, and whose records another sink takes with other records (``take_events``
groups what has arrived). For that the look-up stays, before the INSERT: batch
ids already stored are skipped, and a batch stored in part (a split that
stopped half-way) gets only its rows not stored. The look-up is not atomic (two
sinks can both find a batch missing), the token is; together: a replay with the
same grouping is dropped by the engine even when it races the first INSERT, and
one with another grouping is skipped once the first INSERT is visible. Left open:
two sinks inserting the same batch at the same moment in different groupings (a
rebalance during a slow INSERT), which would need one INSERT per batch (a part
per record: far too many parts).

Two kinds of failure, two answers. An outage (no connection, a timeout, a missing
table: anything but the codes of ``storage.dead_letters.refusal_reason``) is
waited out: the same INSERT, with the same token, is retried with back-off,
because what was accepted must be stored. A batch refused for its content (a
value a column does not take, a violated constraint) would be refused for ever, so
it is split in halves until the refused rows are alone; they become dead letters
(``beacon dlq``) and the others are stored. The split runs only after a refusal:
the normal path is one INSERT.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid

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

    def write_rows(self, payload: bytes, count: int, sample_ts: list[float], token: str | None = None) -> None:
        """Insert ``count`` JSONEachRow rows (arrival times of a sample, for the
        latency metric) as one INSERT with ``token`` (default: a new random one,
        the same for every retry); blocks, retrying, until ClickHouse took them, or
        refused some, which become dead letters."""
        token = token or f"rows:{uuid.uuid4().hex}"
        refusal = self._retry(lambda: self._insert_unless_refused(payload, count, sample_ts, token))
        if refusal is not None:
            self._set_aside_refused(payload.split(b"\n"), refusal, token)

    def write_batches(self, batches: list[tuple[str, bytes]]) -> int:
        """Insert the clean batches whose id is not stored yet; return rows inserted.
        Blocks, retrying, until ClickHouse took them (or refused some)."""
        unique = {batch_id: rows for batch_id, rows in batches if rows}
        if not unique:
            return 0
        first_ts = {batch_id: orjson.loads(rows.split(b"\n", 1)[0])["ts"] for batch_id, rows in unique.items()}
        since = min(first_ts.values())
        stored = self._retry(lambda: stored_batch_rows(self.store, list(unique), since))
        # Sorted: the same batches make the same payload, row for row, whatever order
        # they came in (a half's token names a row range of it).
        fresh = sorted(batch_id for batch_id in unique if batch_id not in stored)
        # A batch stored in part was being split when its sink stopped (its refused
        # rows are dead letters, or become ones again): only its rows not stored go in.
        partial = sorted(b for b, n in stored.items() if n < unique[b].count(b"\n") + 1)
        if stored:
            metrics.sink_duplicates_skipped.inc(len(stored) - len(partial))
        leftovers: list[bytes] = []
        if partial:
            leftovers = self._retry(
                lambda: self._not_stored([line for b in partial for line in unique[b].split(b"\n")], since)
            )
        if not fresh and not leftovers:
            return 0
        payload = b"\n".join([unique[b] for b in fresh] + leftovers)
        count = payload.count(b"\n") + 1
        token = batches_token(fresh, leftovers)
        refusal = self._retry(lambda: self._insert_unless_refused(payload, count, [first_ts[b] for b in fresh], token))
        if refusal is not None:
            return count - self._set_aside_refused(payload.split(b"\n"), refusal, token)
        return count

    def _not_stored(self, lines: list[bytes], since: float) -> list[bytes]:
        event_ids = [str(row_fields(line).get("event_id", "")) for line in lines]
        stored = stored_event_ids(self.store, event_ids, since)
        return [line for line, event_id in zip(lines, event_ids) if event_id not in stored]

    def _insert(self, payload: bytes, count: int, sample_ts: list[float], token: str) -> None:
        started = time.perf_counter()
        self.store.insert_json_rows(EVENTS_TABLE, payload, token)
        now = time.time()
        metrics.sink_batch_seconds.observe(time.perf_counter() - started)
        metrics.sink_rows.inc(count)
        if sample_ts:
            metrics.last_event_time.set(max(sample_ts))
        for ts in sample_ts:
            metrics.pipeline_latency.observe(now - ts)

    def _insert_unless_refused(
        self, payload: bytes, count: int, sample_ts: list[float], token: str
    ) -> Exception | None:
        """Insert; return the error when ClickHouse refused the rows for their content
        (raise any other: an outage, retried by the caller)."""
        try:
            self._insert(payload, count, sample_ts, token)
        except Exception as exc:
            if refusal_reason(exc) is None:
                raise
            return exc
        return None

    def _set_aside_refused(self, lines: list[bytes], refusal: Exception, token: str) -> int:
        """Store the rows ClickHouse takes, put the others in the dead letters; return
        how many were refused. Halving finds k refused rows among n with about
        2·k·log2(n) INSERTs; an INSERT is atomic, so a refused one stored nothing
        (and left no token behind: its halves may be stored under theirs)."""
        refused = self._split(lines, refusal, token, 0)
        letters = [
            DeadLetter(line, refusal_reason(exc) or "", error_text(exc), _batch_id(line)) for line, exc in refused
        ]
        self._retry(lambda: self.dead_letters.put(letters))
        for letter in letters:
            metrics.sink_dead_letters.labels(letter.reason).inc()
        log.warning(
            "rows refused by the store set aside as dead letters",
            extra={"rows": len(lines), "refused": len(letters), "reasons": sorted({lt.reason for lt in letters})},
        )
        return len(letters)

    def _split(self, lines: list[bytes], refusal: Exception, token: str, first: int) -> list[tuple[bytes, Exception]]:
        """``lines`` are rows ``first``… of the INSERT named ``token``: each half's
        token names its range of those rows, the same on every run of this split."""
        if len(lines) == 1:
            return [(lines[0], refusal)]
        refused = []
        middle = len(lines) // 2
        for start, half in ((0, lines[:middle]), (middle, lines[middle:])):
            payload = b"\n".join(half)
            lo = first + start
            half_token = f"{token}:{lo}-{lo + len(half)}"
            error = self._retry(
                lambda payload=payload, half=half, half_token=half_token: self._insert_unless_refused(
                    payload, len(half), [], half_token
                )
            )
            if error is not None:
                refused += self._split(half, error, token, lo)
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


def batches_token(batch_ids: list[str], leftovers: list[bytes]) -> str:
    """The deduplication token of an INSERT of the (sorted) batches ``batch_ids``,
    then the rows ``leftovers`` (of batches stored in part): a batch id names its
    rows (a record of the clean topic never changes), a leftover row is named by its
    own bytes."""
    digest = hashlib.sha256()
    for batch_id in batch_ids:
        digest.update(batch_id.encode() + b"\n")
    for line in leftovers:
        digest.update(b"\0" + line)
    return f"batches:{digest.hexdigest()}"


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
    return {
        event_id
        for (event_id,) in store.rows(
            f"SELECT toString(event_id) FROM {EVENTS_TABLE} "
            "WHERE ts >= fromUnixTimestamp64Milli({since:Int64}) AND toString(event_id) IN {ids:Array(String)}",
            {"since": int(since * 1000) - _DEDUP_MARGIN_MS, "ids": event_ids},
        )
    }


def _batch_id(line: bytes) -> str:
    return str(row_fields(line).get("batch_id", ""))
