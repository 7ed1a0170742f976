"""The collector's view of registered sites, refreshed in the background so that a
request never waits for storage."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from storage.sites import Site

log = logging.getLogger("beacon.sites")


class SiteDirectory:
    def __init__(self, load: Callable[[], list[Site]], refresh_seconds: float = 2.0):
        self._load = load
        self._refresh_seconds = refresh_seconds
        self.domains: frozenset[str] = frozenset()
        self._origins: dict[str, frozenset[str]] = {}
        self.all_origins: frozenset[str] = frozenset()
        self.loaded = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        sites = self._load()
        self._origins = {s.domain: frozenset(s.origins) for s in sites}
        self.all_origins = frozenset(o for s in sites for o in s.origins)
        self.domains = frozenset(self._origins)
        self.loaded = True

    def origin_allowed(self, site: str, origin: str) -> bool:
        return origin in self._origins.get(site, ())

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="site-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_seconds):
            try:
                self.refresh()
            except Exception:  # keep serving with the last good list
                log.exception("site list refresh failed")
