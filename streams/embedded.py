"""The embedded pipeline: collector → privacy filter → bounded buffer → batched
inserts, in the process that owns the chDB data directory.

The request only accepts a beacon; the filter runs on the beacons of a few
milliseconds together (``FilteringHandoff``), in the same event loop, right
after the answers are written. The full IP lives in this process's memory until
then (at most ``FILTER_WAIT`` seconds), never longer, and the buffer holds only
storable rows, already encoded. One thread drains the buffer every
``flush_interval`` seconds (or sooner when ``batch_max_rows`` are waiting) into one
INSERT; that thread does almost no Python work (chDB releases the GIL while it
inserts), so it does not compete with the HTTP loop. When the buffer is full the
collector answers 503, so an accepted beacon is never dropped for lack of room; a
failed insert is retried with the same batch (``EventSink``). ``stop()`` drains
everything accepted before returning.

With ``beacon serve --workers N`` the HTTP processes filter and encode, and ship
their rows to the owner's ``RowBuffer`` (``storage.row_channel``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

from beacon import metrics
from schemas.events import Event, RawEvent
from storage.sink import EventSink, encode_rows
from streams.privacy_filter import FilterEnv, filter_batch, filter_event

log = logging.getLogger("beacon.pipeline")


class RowBuffer:
    """Clean JSONEachRow rows waiting for their INSERT, bounded, drained by one thread."""

    def __init__(self, sink: EventSink, capacity: int = 200_000, batch_max_rows: int = 10_000, flush_interval: float = 0.5):
        self.sink = sink
        self.capacity = capacity
        self.batch_max_rows = batch_max_rows
        self.flush_interval = flush_interval
        self._chunks: list[bytes] = []
        self._rows = 0
        self._arrivals: list[float] = []  # one arrival time per chunk, for the latency metric
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inserter", daemon=True)

    def has_room(self, rows: int) -> bool:
        return not self._stopping and self._rows + rows <= self.capacity

    def add(self, chunk: bytes, rows: int, arrival: float) -> None:
        if not rows:
            return
        with self._lock:
            self._chunks.append(chunk)
            self._arrivals.append(arrival)
            self._rows += rows
            depth = self._rows
        metrics.queue_depth.set(depth)
        if depth >= self.batch_max_rows:
            self._wake.set()

    @property
    def depth(self) -> int:
        return self._rows

    def ready(self) -> bool:
        return self._thread.is_alive() and self.sink.healthy

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Refuse new rows, store every row taken, then return."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("pipeline did not drain in time", extra={"pending": self.depth})

    def _run(self) -> None:
        while True:
            if not self._stopping:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            with self._lock:
                chunks, rows, arrivals = self._chunks, self._rows, self._arrivals
                self._chunks, self._rows, self._arrivals = [], 0, []
            metrics.queue_depth.set(0)
            if chunks:
                # Retries until stored: these beacons were accepted. Meanwhile the
                # buffer fills and the collector sheds load with 503.
                self.sink.write_rows(b"\n".join(chunks), rows, arrivals[:: max(1, len(arrivals) // 100)])
            elif self._stopping:
                return


# How long an accepted beacon may wait for the filter, and how many may wait. The
# filter costs a beacon about half as much in batches of 32 or more as between
# requests, where the HTTP code pushes its code and tables out of the CPU caches:
# 140–148 µs per single-beacon request before, 91–118 after (request_bench.py's
# harness; docs/benchmarks.md).
FILTER_WAIT = 0.005
FILTER_BATCH = 64


class FilteringHandoff:
    """The collector's ``Handoff`` in the embedded mode: take the beacons of a
    request, then filter and encode those of the last few milliseconds together and
    give the rows to ``deliver`` (the owner's buffer, or the channel to it).

    Runs in the event loop's thread: ``submit`` from requests, the filter from a
    timer, or as soon as the loop is free once ``FILTER_BATCH`` beacons wait.
    ``flush()`` filters whatever waits (at shutdown, before the rows are stored)."""

    def __init__(self, env: FilterEnv, has_room, deliver, ready):
        self.env = env
        self._has_room = has_room
        self._deliver = deliver
        self.ready = ready
        self._waiting: list[RawEvent] = []
        self._scheduled: asyncio.Handle | None = None  # the flush to come (a timer, or the next turn)
        self._scheduled_soon = False

    def submit(self, events: list[RawEvent]) -> bool:
        waiting = self._waiting
        if not self._has_room(len(waiting) + len(events)):
            return False
        waiting += events
        if len(waiting) >= FILTER_BATCH:
            if not self._scheduled_soon:
                if self._scheduled is not None:
                    self._scheduled.cancel()
                self._scheduled = asyncio.get_running_loop().call_soon(self.flush)
                self._scheduled_soon = True
        elif self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(FILTER_WAIT, self.flush)
        return True

    def flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled, self._scheduled_soon = None, False
        events, self._waiting = self._waiting, []
        if not events:
            return
        try:
            kept, _dropped, actions = filter_batch(events, self.env)
        except Exception:
            kept, actions = self._filter_one_by_one(events)
        metrics.count_actions(actions)
        if kept:
            self._deliver(encode_rows(kept), len(kept), kept[0].ts)

    def _filter_one_by_one(self, events: list[RawEvent]) -> tuple[list[Event], Counter]:
        """A beacon the filter fails on (a bug) must not take the others with it."""
        kept: list[Event] = []
        actions: Counter = Counter()
        for event in events:
            try:
                result = filter_event(event, self.env, actions)
            except Exception as exc:
                actions["filter_error"] += 1
                log.error("the privacy filter failed on a beacon; it is not stored",
                          extra={"error": type(exc).__name__, "event_id": event.event_id})
                continue
            if isinstance(result, Event):
                kept.append(result)
        return kept, actions


def local_handoff(env: FilterEnv, buffer: RowBuffer) -> FilteringHandoff:
    return FilteringHandoff(env, buffer.has_room, buffer.add, buffer.ready)
