"""The collector's view of registered sites, refreshed in the background so that a
request never waits for storage."""

from __future__ import annotations

from collections.abc import Callable

from storage.refresh import Refreshed
from storage.sites import Site


class SiteDirectory(Refreshed):
    name = "site-refresh"

    def __init__(
        self,
        load: Callable[[], list[Site]],
        refresh_seconds: float = 2.0,
        store_writes: Callable[[], int | None] | None = None,
    ):
        super().__init__(refresh_seconds, store_writes)
        self._load = load
        self.domains: frozenset[str] = frozenset()
        self._origins: dict[str, frozenset[str]] = {}
        self._zones: dict[str, str] = {}
        self.all_origins: frozenset[str] = frozenset()
        self.loaded = False

    def load(self) -> None:
        sites = self._load()
        self._origins = {s.domain: frozenset(s.origins) for s in sites}
        self._zones = {s.domain: s.timezone for s in sites if s.timezone != "UTC"}
        self.all_origins = frozenset(o for s in sites for o in s.origins)
        self.domains = frozenset(self._origins)
        self.loaded = True

    def zone_of(self, site: str) -> str:
        """The site's time zone (UTC unless set)."""
        return self._zones.get(site, "UTC")

    def origin_allowed(self, site: str, origin: str) -> bool:
        return origin in self._origins.get(site, ())
