"""The ASGI app mounted at /api/: routes by method and path, the token check each
route asks for, a request counter, and no caching (answers may hold personal data).
A route without a role is public (the OpenAPI document)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from api.auth import authenticate_caller, forbidden
from common import metrics
from storage.sessions import SessionCache
from storage.tokens import Token, TokenDirectory
from web.messages import Request, Response
from web.routing import find_route, not_routed

log = logging.getLogger("beacon.api")

Handler = Callable[[Request, Token | None], Awaitable[Response]]  # None: a public route
# Who calls with ``X-Beacon-Share`` (a shared link: dashboard.share), or the refusal.
ShareAuthenticator = Callable[[Request], Awaitable[Token | Response]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str  # the metric label: a fixed word, never request data
    role: str | None  # the token role the route needs (admin tokens may use every route); None: public
    handler: Handler
    every_site: bool = False  # acts on every site's data: site-limited tokens are refused


class ApiApp:
    def __init__(
        self,
        tokens: TokenDirectory,
        routes: list[Route],
        sessions: SessionCache | None = None,
        shares: ShareAuthenticator | None = None,
    ):
        self.tokens = tokens
        self.sessions = sessions  # the dashboard's sessions, taken for reads (api.auth)
        self.shares = shares
        self._routes = {(r.method, r.path): r for r in routes}

    async def __call__(self, scope, receive, send) -> None:
        route = find_route(self._routes, scope["method"], scope["path"])
        if route is None:
            response = not_routed(scope["path"], self._routes)
        else:
            response = await self._answer(route, Request(scope, receive))
        metrics.api_request(route.name if route else "unknown", response.status)
        response.headers.append((b"cache-control", b"no-store"))
        await response.send(send)

    async def _answer(self, route: Route, request: Request) -> Response:
        refusal = ambiguous(request.scope)
        if refusal is not None:
            return refusal
        token = None
        if route.role is not None:
            token = await self._caller(request)
            if isinstance(token, Response):
                return token
            refusal = forbidden(token, route.role, route.every_site)
            if refusal is not None:
                return refusal
        try:
            return await route.handler(request, token)
        except Exception as exc:  # a bug: answer, count and log it (without request data)
            log.exception("API request failed", extra={"route": route.name, "error": type(exc).__name__})
            return Response.json(500, {"error": "internal error"})

    async def _caller(self, request: Request) -> Token | Response:
        if self.shares is not None and request.header(b"x-beacon-share"):
            return await self.shares(request)
        return await authenticate_caller(request, self.tokens, self.sessions)


def ambiguous(scope: dict) -> Response | None:
    """400 for a request that says one thing twice: two ``Authorization`` headers, or a
    query parameter given twice (``site_id=a&site_id=b``). Whichever copy a layer read
    (a proxy, a cache, this app) would differ, so none is chosen."""
    if sum(name == b"authorization" for name, _ in scope["headers"]) > 1:
        return Response.json(400, {"error": "send one Authorization header", "header": "authorization"})
    counted = Counter(name for name, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    repeated = next((name for name, n in counted.items() if n > 1), None)
    if repeated is not None:
        return Response.json(400, {"error": f"{repeated[:40]} is given more than once", "parameter": repeated[:40]})
    return None
