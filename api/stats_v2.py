"""Plausible's Stats API v2: ``POST /api/v2/query``, a JSON question answered in
Plausible's v2 shape (docs/api-v2.md). Same tokens and site scope as v1: the request
is parsed (``api.v2_query``), asked of the read side (``queries.grouped``) and shaped
(``api.v2_results``), off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

import orjson

from api import v2_query, v2_results
from api.app import Route
from api.stats import readable_site
from queries.model import QueryError
from queries.span import first_day
from storage.clickhouse import Store
from storage.sites import Site
from storage.tokens import Token
from web.messages import Request, Response

PATH = "/api/v2/query"
MAX_BODY_BYTES = 64 * 1024


class StatsV2:
    def __init__(self, store: Store, registered: Callable[[str], Site | None], clock: Callable[[], float] = time.time):
        self.store = store
        self.registered = registered  # the v1 API's view of the registered sites
        self.clock = clock

    def routes(self) -> list[Route]:
        return [Route("POST", PATH, "stats_v2_query", "analyst", self.query)]

    async def query(self, request: Request, token: Token) -> Response:
        raw = await request.body(MAX_BODY_BYTES)
        if raw is None:
            return Response.json(413, {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"})
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Response.json(400, {"error": "the body must be a JSON object (Content-Type: application/json)"})
        try:
            registered = await readable_site(token, v2_query.site_id(body), self.registered)
            if isinstance(registered, Response):
                return registered
            result = await asyncio.get_running_loop().run_in_executor(None, partial(self._answer, registered, body))
        except v2_query.V2Error as exc:
            return Response.json(400, exc.body())
        except QueryError as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, result)

    def _answer(self, site: Site, body: dict) -> dict[str, Any]:
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        today = now.astimezone(site.zone).date()
        asked = v2_query.parse(
            body, site.domain, site.timezone, now, lambda: first_day(self.store, site.domain, site.timezone, today)
        )
        return v2_results.answer(self.store, asked)
