"""The shapes the HTTP server and the apps mounted on it agree on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
# A whole response at once: status, headers (with content-length), body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class Deferred(Protocol):
    """An answer a direct handler cannot give yet (the collector's 202 waits until
    its beacons are durable): the server passes ``then`` a callback, which takes the
    answer once known; the connection's next requests wait for it, in order."""

    def then(self, answer: Callable[[Answer], None]) -> None: ...


# An app's synchronous path for its busiest routes, given the scope and the whole
# body: the answer (now, or deferred), or None for a request that goes through ASGI.
DirectHandler = Callable[[dict, bytes], "Answer | Deferred | None"]
# Requests refused by the server itself (before any app saw them): status and a closed
# reason name, for metrics. Never the request's content.
RejectHook = Callable[[int, str], None]

# The ASGI version the server speaks, in every scope.
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
