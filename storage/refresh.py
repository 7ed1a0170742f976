"""A value read from the store and refreshed in the background, so that requests
never wait for storage (sites, opt-outs, tokens)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("beacon.refresh")


class Refreshed:
    """Subclasses implement ``load()``; ``start()`` calls it once, then every
    ``refresh_seconds`` in a thread, keeping the last good value on errors.
    ``refresh()`` loads at once (after a write through the control socket); loads
    never overlap, so a slow periodic read cannot overwrite a newer one.

    With ``store_writes`` (``Store.writes``: a count of the store's write commands,
    when it sees them all), a refresh is skipped while the count has not moved:
    on the embedded engine each query costs milliseconds of CPU, under load as much
    as the inserts, and these tables change a few times a day. The value is read
    again at least every ``FULL_REFRESH_EVERY`` seconds all the same."""

    name = "refresh"
    FULL_REFRESH_EVERY = 30.0

    def __init__(self, refresh_seconds: float, store_writes: Callable[[], int | None] | None = None):
        self._refresh_seconds = refresh_seconds
        self._store_writes = store_writes
        self._writes_seen: int | None = None  # the count before the last full read
        self._read_at = float("-inf")  # monotonic time of that read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loading = threading.Lock()

    def load(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        with self._loading:
            self.load()

    def unchanged(self) -> None:
        """Called when a refresh was skipped because the store has not been written:
        the value held is confirmed current."""

    def start(self) -> None:
        self._tick()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_seconds):
            try:
                self._tick()
            except Exception:
                log.exception("refresh failed; keeping the last value", extra={"what": self.name})

    def _tick(self) -> None:
        # The count is read before the table: a write between the two shows up as a
        # new count at the next tick, and is read then.
        writes = self._store_writes() if self._store_writes else None
        now = time.monotonic()
        if writes is not None and writes == self._writes_seen and now - self._read_at < self.FULL_REFRESH_EVERY:
            self.unchanged()
            return
        self.refresh()
        self._writes_seen, self._read_at = writes, now
