"""The ASGI app mounted at /api/: routes by method and path, the token check each
route asks for, a request counter, and no caching (answers may hold personal data).
A route without a role is public (the OpenAPI document)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from api.auth import authenticate, forbidden
from common import metrics
from web.messages import Request, Response
from storage.tokens import Token, TokenDirectory

log = logging.getLogger("beacon.api")

Handler = Callable[[Request, Token | None], Awaitable[Response]]  # None: a public route


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str  # the metric label: a fixed word, never request data
    role: str | None  # the token role the route needs (admin tokens may use every route); None: public
    handler: Handler
    every_site: bool = False  # acts on every site's data: site-limited tokens are refused


class ApiApp:
    def __init__(self, tokens: TokenDirectory, routes: list[Route]):
        self.tokens = tokens
        self._routes = {(r.method, r.path): r for r in routes}
        self._paths = {r.path for r in routes}

    async def __call__(self, scope, receive, send) -> None:
        route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            status = 405 if scope["path"] in self._paths else 404
            response = Response.json(status, {"error": "not found" if status == 404 else "method not allowed"})
        else:
            response = await self._answer(route, Request(scope, receive))
        metrics.api_request(route.name if route else "unknown", response.status)
        response.headers.append((b"cache-control", b"no-store"))
        await response.send(send)

    async def _answer(self, route: Route, request: Request) -> Response:
        token = None
        if route.role is not None:
            token = authenticate(request, self.tokens)
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
