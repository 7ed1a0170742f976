"""The Stats API, compatible with Plausible's Stats API v1 (``GET /api/v1/stats/…``).

A client written for Plausible's v1 works against beacon by changing its base URL
and token. Each route parses its parameters (``api.stats_params``), checks that the
token may read the site, and asks the read side (``queries``), off the event loop.
Answers hold aggregates only, never event-level rows: an ``analyst`` token sees
nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import queries
from api import stats_params as params
from api.app import Route
from queries.funnel import funnel
from queries.imported import described
from queries.metrics import METRICS
from queries.model import QueryError
from storage.clickhouse import Store
from storage.funnels import find_funnel
from storage.sites import Site, list_sites
from storage.tokens import Token
from web.messages import Request, Response

PREFIX = "/api/v1/stats/"
SITES_FRESH_SECONDS = 5.0


class StatsAPI:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self._sites: dict[str, Site] = {}
        self._sites_read_at = float("-inf")

    def routes(self) -> list[Route]:
        return [
            Route("GET", PREFIX + "realtime/visitors", "stats_realtime", "analyst", self.realtime),
            Route("GET", PREFIX + "aggregate", "stats_aggregate", "analyst", self.aggregate),
            Route("GET", PREFIX + "timeseries", "stats_timeseries", "analyst", self.timeseries),
            Route("GET", PREFIX + "breakdown", "stats_breakdown", "analyst", self.breakdown),
            Route("GET", PREFIX + "funnel", "stats_funnel", "analyst", self.funnel),
        ]

    async def realtime(self, request: Request, token: Token) -> Response:
        return await self._answer(request, token, self._realtime)

    async def aggregate(self, request: Request, token: Token) -> Response:
        return await self._answer(request, token, self._aggregate)

    async def timeseries(self, request: Request, token: Token) -> Response:
        return await self._answer(request, token, self._timeseries)

    async def breakdown(self, request: Request, token: Token) -> Response:
        return await self._answer(request, token, self._breakdown)

    async def funnel(self, request: Request, token: Token) -> Response:
        return await self._answer(request, token, self._funnel)

    # --- each route's work, in an executor thread ------------------------------------------

    def _realtime(self, site: Site, given: dict[str, str]) -> Any:
        return queries.realtime_visitors(self.store, site.domain, datetime.fromtimestamp(self.clock(), timezone.utc))

    def _aggregate(self, site: Site, given: dict[str, str]) -> Any:
        q, chosen = self._query("aggregate", site, given)
        compare = params.compare(given)
        current = queries.aggregate(self.store, q)
        if not compare:
            return {"results": {m: {"value": current[m]} for m in q.metrics}, "meta": self._meta(site, chosen, q)}
        earlier = chosen.previous()
        before = queries.aggregate(self.store, params.shifted(q, earlier))
        return {
            "results": {
                m: {
                    "value": current[m],
                    "comparison_value": before[m],
                    "change": METRICS[m].changed(current[m], before[m]),
                }
                for m in q.metrics
            },
            "meta": meta(site, earlier) | described(self.store, q),
        }

    def _timeseries(self, site: Site, given: dict[str, str]) -> Any:
        q, chosen = self._query("timeseries", site, given)
        return {"results": queries.timeseries(self.store, q), "meta": self._meta(site, chosen, q)}

    def _breakdown(self, site: Site, given: dict[str, str]) -> Any:
        q, chosen = self._query("breakdown", site, given)
        return {"results": queries.breakdown(self.store, q), "meta": self._meta(site, chosen, q)}

    def _funnel(self, site: Site, given: dict[str, str]) -> Any:
        name = params.funnel_name(given)
        chosen = find_funnel(self.store, site.domain, name)
        if chosen is None:
            raise params.BadParameter(
                "funnel", f"{site.domain} has no funnel named '{name[:100]}' (beacon funnels list)"
            )
        q, period = self._query("aggregate", site, given)
        figures = funnel(self.store, q, chosen)
        return {"results": figures.as_dict(), "meta": meta(site, period) | {"source": figures.source}}

    # --- shared --------------------------------------------------------------------

    def _meta(self, site: Site, period: params.Period, q: queries.StatsQuery) -> dict:
        """``meta``, and with ``with_imported=true`` whether imports are in the figures, over which days."""
        return meta(site, period) | described(self.store, q)

    async def _answer(self, request: Request, token: Token, work: Callable[[Site, dict[str, str]], Any]) -> Response:
        given = dict(parse_qsl(request.scope["query_string"].decode("latin-1")))
        try:
            registered = await readable_site(token, params.site_id(given), self.registered)
            if isinstance(registered, Response):
                return registered
            result = await asyncio.get_running_loop().run_in_executor(None, partial(work, registered, given))
        except params.BadParameter as exc:
            return Response.json(400, exc.body())
        except QueryError as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, result)

    def registered(self, site: str) -> Site | None:
        now = time.monotonic()
        age = now - self._sites_read_at
        # A site added since the last read is seen within half a second; a client asking
        # for unknown names cannot make every request read the table. A zone set since
        # is seen within SITES_FRESH_SECONDS.
        if age > SITES_FRESH_SECONDS or (site not in self._sites and age > 0.5):
            self._sites = {s.domain: s for s in list_sites(self.store)}
            self._sites_read_at = now
        return self._sites.get(site)

    def _query(self, kind: str, site: Site, given: dict[str, str]) -> tuple[queries.StatsQuery, params.Period]:
        """The question asked, in the site's time zone ("today" is today there)."""
        today = datetime.fromtimestamp(self.clock(), site.zone).date()
        return params.stats_query(kind, site.domain, given, today, site.timezone)


def meta(site: Site, period: params.Period) -> dict:
    """What the figures are cut in (beyond Plausible's v1 shape): the site's zone and,
    when the period reaches back before the site took it, the first day cut in it (the
    days before keep the cut of the zone they were rolled up in)."""
    out = {"timezone": site.timezone}
    if site.zone_since is not None and period.start < site.zone_since:
        out["timezone_from"] = site.zone_since.astimezone(site.zone).date().isoformat()
    return out


async def readable_site(token: Token, site: str, registered: Callable[[str], Site | None]) -> Site | Response:
    """The registered site the token may read (v1 and v2 alike), or the answer that
    refuses it: 403 for another site's token, 404 for a site nobody registered."""
    if not token.covers(site):
        return Response.json(403, {"error": "this token is limited to another site"})
    found = await asyncio.get_running_loop().run_in_executor(None, registered, site)
    if found is None:
        return Response.json(404, {"error": f"site_id '{site[:100]}' is not a registered site"})
    return found
