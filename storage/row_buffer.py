"""Clean rows waiting for their INSERT: a bounded buffer, drained by one thread.

Lives with the sink that drains it. Rows arrive already encoded (JSONEachRow) from
the filter in this process (``streams.embedded``) or from the HTTP processes of
``beacon serve --workers N`` (``storage.row_channel``). One thread drains the
buffer every ``flush_interval`` seconds (or sooner when ``batch_max_rows`` wait)
into one INSERT; it does almost no Python work (chDB releases the GIL while it
inserts), so it does not compete with the HTTP loop. When the buffer is full the
collector answers 503, so an accepted beacon is never dropped for lack of room; a
failed insert is retried with the same batch (``EventSink``). ``stop()`` stores
everything taken before returning.
"""

from __future__ import annotations

import logging
import threading
import time

from common import metrics
from storage.sink import EventSink

log = logging.getLogger("beacon.pipeline")


class RowBuffer:
    """Clean JSONEachRow rows waiting for their INSERT, bounded, drained by one thread."""

    def __init__(
        self, sink: EventSink, capacity: int = 200_000, batch_max_rows: int = 10_000, flush_interval: float = 0.5
    ):
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
        self._rounds = 0  # drain rounds finished; ``flush`` waits for the next whole one
        self._round_done = threading.Condition()
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
    def rounds(self) -> int:
        """Drain rounds finished so far; one begun after a row was added stores it."""
        return self._rounds

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

    def flush(self, timeout: float = 60.0) -> bool:
        """Return True once every row added before the call is stored (a backup's cut,
        an intake log's retirement); False when that takes longer than ``timeout``. The
        round running now may have taken its rows before the last ones came, so this
        waits for the one after it. With no inserter running (not started yet, or ended
        after ``stop``, which it does only once everything is stored), the rows are
        stored when none wait."""
        deadline = time.monotonic() + timeout
        with self._round_done:
            wanted = self._rounds + 2
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                return self._rows == 0
            self._wake.set()  # no round waits for flush_interval meanwhile
            with self._round_done:
                if self._round_done.wait_for(lambda: self._rounds >= wanted, timeout=0.05):
                    return True
        return False

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
            with self._round_done:
                self._rounds += 1
                self._round_done.notify_all()
            if not chunks and self._stopping:
                return
