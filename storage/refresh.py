"""A value read from the store and refreshed in the background, so that requests
never wait for storage (sites, opt-outs)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("beacon.refresh")


class Refreshed:
    """Subclasses implement ``refresh()``; ``start()`` calls it once, then every
    ``refresh_seconds`` in a thread, keeping the last good value on errors."""

    name = "refresh"

    def __init__(self, refresh_seconds: float):
        self._refresh_seconds = refresh_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_seconds):
            try:
                self.refresh()
            except Exception:
                log.exception("refresh failed; keeping the last value", extra={"what": self.name})
