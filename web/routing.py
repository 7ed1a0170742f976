"""The ASGI app a process serves: its routes, the apps mounted under path
prefixes, the lifespan hooks, and what happens to requests nobody answers.

    Router(routes={("POST", "/collect"): collect, ...},   exact method + path
           mounts={"/api/": api_app},                      any path under a prefix
           on_startup=[...], on_shutdown=[...])

Exact routes are looked up first, then the mounts (the longest prefix wins), so an
app may own one path inside another's prefix (the collector's ``/api/event`` inside
the token API's ``/api/``). ``on_response`` sees the route's path ("" when no route
matched) and the status of every request the router answers itself (not those of
mounted apps, which count their own).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from web.messages import Request, Response
from web.types import ASGIApp, DirectHandler

log = logging.getLogger("beacon.http")

Handler = Callable[[Request], Awaitable[Response]]
Routes = dict[tuple[str, str], Handler]  # (method, path) → handler
Hook = Callable[[], Awaitable[None] | None]
T = TypeVar("T")


class Router:
    def __init__(
        self,
        routes: Routes | None = None,
        mounts: dict[str, ASGIApp] | None = None,
        on_startup: list[Hook] | None = None,
        on_shutdown: list[Hook] | None = None,
        on_response: Callable[[str, int], None] | None = None,
        direct: DirectHandler | None = None,
        body_limits: dict[str, int] | None = None,
    ):
        self.routes: Routes = dict(routes or {})
        self.mounts = dict(sorted((mounts or {}).items(), key=lambda item: -len(item[0])))
        self.on_startup = list(on_startup or [])
        self.on_shutdown = list(on_shutdown or [])
        self.on_response = on_response or (lambda route, status: None)
        # The server's synchronous path for the busiest route (``web.types.DirectHandler``).
        self.direct = direct
        # Largest request body per exact path, below the server's own limit; the
        # server refuses a larger one before reading it (``web.server.Limits``).
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = find_route(self.routes, scope["method"], scope["path"])
        if handler is None:
            mounted = self._mounted(scope["path"])
            if mounted is not None:
                await mounted(scope, receive, send)
                return
            route = ""
            response = self._unrouted(scope["path"])
        else:
            route = scope["path"]
            try:
                response = await handler(Request(scope, receive))
            except Exception as exc:
                response = failed(scope, exc)
        self.on_response(route, response.status)
        await response.send(send)

    def _mounted(self, path: str) -> ASGIApp | None:
        for prefix, app in self.mounts.items():
            if path.startswith(prefix):
                return app
        return None

    def _unrouted(self, path: str) -> Response:
        return not_routed(path, self.routes)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            phase = message["type"].rsplit(".", 1)[-1]
            hooks = self.on_startup if phase == "startup" else self.on_shutdown
            try:
                for hook in hooks:
                    result = hook()
                    if result is not None:
                        await result
            except Exception as exc:
                await send({"type": f"lifespan.{phase}.failed", "message": repr(exc)})
                if phase == "startup":
                    return
                raise
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return


def find_route(routes: dict[tuple[str, str], T], method: str, path: str) -> T | None:
    """The handler of ``method`` on ``path``; a GET route answers HEAD too (RFC 9110
    9.3.2: the server sends the GET answer's headers, and no body)."""
    handler = routes.get((method, path))
    if handler is None and method == "HEAD":
        handler = routes.get(("GET", path))
    return handler


def not_routed(path: str, routes: Iterable[tuple[str, str]]) -> Response:
    """404 for a path no route has; 405 with ``Allow`` (RFC 9110) for another method."""
    allowed = {method for method, route in routes if route == path}
    allowed = sorted(allowed | {"HEAD"} if "GET" in allowed else allowed)
    if not allowed:
        return Response.json(404, {"error": "not found"})
    return Response.json(405, {"error": "method not allowed"}, [(b"allow", ", ".join(allowed).encode())])


def failed(scope: dict, exc: Exception) -> Response:
    """A bug: answer 500, and log it (without request data); the caller counts it."""
    log.exception("request failed", extra={"route": scope["path"], "error": type(exc).__name__})
    return Response.json(500, {"error": "internal error"})
