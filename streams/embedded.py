"""The embedded pipeline: collector → bounded in-memory queue → privacy filter →
batched inserts, in the one process that owns the chDB data directory.

The HTTP loop only appends to the queue; one thread drains it every
``flush_interval`` seconds (or sooner when ``batch_max_rows`` are waiting), filters
the batch and inserts it. When the queue is full the collector answers 503, so an
accepted beacon is never dropped for lack of room; a failed insert is retried with
the same batch (``EventSink``). ``stop()`` drains everything accepted before returning.
"""
from __future__ import annotations

import logging
import threading

from beacon import metrics
from schemas.events import RawEvent
from storage.sink import EventSink
from streams.privacy_filter import FilterEnv, filter_batch

log = logging.getLogger("beacon.pipeline")


class EmbeddedPipeline:
    def __init__(
        self,
        env: FilterEnv,
        sink: EventSink,
        capacity: int = 200_000,
        batch_max_rows: int = 50_000,
        flush_interval: float = 0.5,
    ):
        self.env = env
        self.sink = sink
        self.capacity = capacity
        self.batch_max_rows = batch_max_rows
        self.flush_interval = flush_interval
        self._pending: list[RawEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    # --- the collector's side (Handoff) -------------------------------------------

    def submit(self, events: list[RawEvent]) -> bool:
        with self._lock:
            if self._stopping or len(self._pending) + len(events) > self.capacity:
                return False
            self._pending.extend(events)
            size = len(self._pending)
        if size >= self.batch_max_rows:
            self._wake.set()
        return True

    def ready(self) -> bool:
        return self._thread.is_alive() and self.sink.healthy

    def depth(self) -> int:
        return len(self._pending)

    # --- the storage side -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Refuse new events, store every accepted one, then return."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("pipeline did not drain in time", extra={"pending": self.depth()})

    def _run(self) -> None:
        while True:
            if not self._stopping:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            batch = self._take()
            if batch:
                self._store(batch)
            elif self._stopping:
                return

    def _take(self) -> list[RawEvent]:
        with self._lock:
            batch, self._pending = self._pending[: self.batch_max_rows], self._pending[self.batch_max_rows :]
        metrics.queue_depth.set(len(self._pending))
        if self._pending:
            self._wake.set()  # more is waiting: go again without sleeping
        return batch

    def _store(self, batch: list[RawEvent]) -> None:
        events, _dropped, actions = filter_batch(batch, self.env)
        metrics.count_actions(actions)
        # Retries until stored: the batch was accepted. Meanwhile the queue fills and
        # the collector sheds load with 503.
        self.sink.write(events)
