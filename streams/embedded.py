"""The embedded pipeline: collector → privacy filter → bounded buffer → batched
inserts, in the one process that owns the chDB data directory.

The filter runs in the request, as soon as a beacon is accepted, so the full IP
never outlives the request and the buffer holds only storable rows, already
encoded. One thread drains the buffer every ``flush_interval`` seconds (or sooner
when ``batch_max_rows`` are waiting) into one INSERT; that thread does almost no
Python work (chDB releases the GIL while it inserts), so it does not compete with
the HTTP loop. When the buffer is full the collector answers 503, so an accepted
beacon is never dropped for lack of room; a failed insert is retried with the same
batch (``EventSink``). ``stop()`` drains everything accepted before returning.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter

from beacon import metrics
from schemas.events import RawEvent
from storage.sink import EventSink, encode_rows
from streams.privacy_filter import FilterEnv, filter_batch

log = logging.getLogger("beacon.pipeline")


class EmbeddedPipeline:
    def __init__(
        self,
        env: FilterEnv,
        sink: EventSink,
        capacity: int = 200_000,
        batch_max_rows: int = 10_000,
        flush_interval: float = 0.5,
    ):
        self.env = env
        self.sink = sink
        self.capacity = capacity
        self.batch_max_rows = batch_max_rows
        self.flush_interval = flush_interval
        self._chunks: list[bytes] = []  # JSONEachRow rows, one chunk per request
        self._rows = 0
        self._arrivals: list[float] = []  # one arrival time per chunk, for the latency metric
        self._actions: Counter = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        metrics.queue_depth.set_function(lambda: self._rows)

    # --- the collector's side (Handoff) -------------------------------------------

    def submit(self, events: list[RawEvent]) -> bool:
        if self._stopping or self._rows + len(events) > self.capacity:
            return False
        kept, _dropped, actions = filter_batch(events, self.env)
        chunk = encode_rows(kept)
        with self._lock:
            self._actions.update(actions)
            if kept:
                self._chunks.append(chunk)
                self._arrivals.append(kept[0].ts)
                self._rows += len(kept)
            full = self._rows >= self.batch_max_rows
        if full:
            self._wake.set()
        return True

    def ready(self) -> bool:
        return self._thread.is_alive() and self.sink.healthy

    def depth(self) -> int:
        return self._rows

    # --- the storage side -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Refuse new events, store every accepted one, then return."""
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
            with self._lock:
                chunks, rows, arrivals, actions = self._chunks, self._rows, self._arrivals, self._actions
                self._chunks, self._rows, self._arrivals, self._actions = [], 0, [], Counter()
            metrics.count_actions(actions)
            if chunks:
                # Retries until stored: these beacons were accepted. Meanwhile the
                # buffer fills and the collector sheds load with 503.
                self.sink.write_rows(b"\n".join(chunks), rows, arrivals[:: max(1, len(arrivals) // 100)])
            elif self._stopping:
                return
