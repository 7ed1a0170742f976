"""The HTTP/1.1 server of every beacon process: ASGI apps on httptools and asyncio.

Why not uvicorn: on the collector's path the server was the largest single cost.
A bare ASGI app under uvicorn costs ~34 µs of CPU per request on our 2-core
machine; this server, which reads a request whole and writes each response in one
call, ~10 µs (docs/benchmarks.md). The apps stay plain ASGI (HTTP and lifespan
scopes), so any ASGI server can still run them.

What it does, per connection:
- keep-alive (HTTP/1.1 by default, HTTP/1.0 on request) and pipelining: requests
  are answered in order, one at a time; reading pauses while too many wait, and a
  client that sends more than ``max_pipelined`` at once gets 429 and is closed;
- a request is read whole before the app runs, up to ``max_body_bytes`` or its
  route's ``body_limits`` (413 beyond, from the declared length before the body is
  read, and for chunked bodies as they arrive); ``Expect: 100-continue`` is honoured;
- an HTTP/1.1 request without ``Host``, or with more than one ``Content-Length``
  (llhttp refuses those), gets 400: a proxy could read it otherwise;
- at most ``max_connections`` are open, and ``max_connections_per_client`` from one
  address (except ``exempt`` ones, such as a trusted proxy): a connection beyond
  gets 503 at once and is closed, before anything of it is read;
- headers are limited (431) and must arrive, with the body, within
  ``request_timeout`` (408: slow clients cannot hold connections open);
  idle connections close after ``keep_alive_timeout``;
- responses carry ``Date``; one without ``Content-Length`` is sent chunked (HTTP/1.1)
  or ends the connection (HTTP/1.0); writing waits while the peer does not read,
  for at most ``request_timeout``, then the connection is dropped;
- malformed requests (including Content-Length together with Transfer-Encoding,
  which llhttp refuses) get 400 and the connection closes; an app that fails gets
  500 and the connection goes on serving.

An app may also hand the server a ``DirectHandler``: a synchronous function that
answers its busiest routes from the scope and the whole body, without ASGI's
per-request coroutines and messages (the collector's ``POST /collect``: ~9 % of
its instructions). It returns None for every other request, which goes through
ASGI; either way requests are answered in order.

Not supported: TLS (terminate it at a proxy), HTTP/2, WebSocket (an Upgrade header
is ignored and the connection closes after the response), streamed request bodies.

Shutdown (``request_stop``, SIGTERM or SIGINT): stop listening, close idle
connections, let requests in progress finish (``drain_timeout``), then run the
app's lifespan shutdown, which stores whatever was accepted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections import Counter
from collections.abc import Callable

from web.connection import Connection
from web.context import Admission, Limits, ServerContext
from web.lifespan import Lifespan, LifespanFailure  # noqa: F401  (LifespanFailure: raised by serve)
from web.types import ASGIApp, DirectHandler, RejectHook

log = logging.getLogger("beacon.http")


class HTTPServer:
    def __init__(
        self,
        app: ASGIApp,
        limits: Limits = Limits(),
        on_reject: RejectHook | None = None,
        direct: DirectHandler | None = None,
        exempt: Callable[[str], bool] | None = None,
    ):
        self.app = app
        self.limits = limits
        # All its connections see of it: they import nothing of this module.
        self.context = ServerContext(app, limits, Admission(limits, exempt), on_reject, direct)
        self._stop: asyncio.Event | None = None
        self._stop_requested = False  # before serve() made the event: from another thread
        self.loop: asyncio.AbstractEventLoop | None = None  # set by serve()

    @property
    def connections(self) -> set[Connection]:
        return self.context.admission.connections  # type: ignore[return-value]

    @property
    def per_client(self) -> Counter[str]:
        return self.context.admission.per_client

    @property
    def exempt(self) -> Callable[[str], bool]:
        return self.context.admission.exempt

    @exempt.setter
    def exempt(self, exempt: Callable[[str], bool]) -> None:
        self.context.admission.exempt = exempt

    # --- running ------------------------------------------------------------------

    async def serve(
        self,
        sockets: list[socket.socket],
        install_signal_handlers: bool = True,
        on_serving: Callable[[], None] | None = None,
    ) -> None:
        """Run the app's startup, serve until asked to stop, drain, run its shutdown.
        Raises ``LifespanFailure`` when startup fails (nothing is served then).
        ``on_serving`` is called once the sockets accept connections."""
        self.loop = self.context.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.request_stop)
        lifespan = Lifespan(self.app)
        await lifespan.startup()
        context = self.context
        servers = [await self.loop.create_server(lambda: Connection(context), sock=s, backlog=2048) for s in sockets]
        sweeper = self.loop.create_task(self._sweep())
        if on_serving is not None:
            on_serving()
        try:
            await self._stop.wait()
        finally:
            for server in servers:
                server.close()
            await self._drain()
            sweeper.cancel()
            await lifespan.shutdown()

    def request_stop(self) -> None:
        """Begin a graceful stop (from the loop's thread; see ``request_stop_threadsafe``)."""
        if self._stop is not None:
            self._stop.set()

    def request_stop_threadsafe(self) -> None:
        self._stop_requested = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.request_stop)

    async def _drain(self) -> None:
        self.context.stopping = True
        for connection in list(self.connections):
            connection.close_when_idle()
        deadline = self.loop.time() + self.limits.drain_timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            log.warning("connection still busy at the end of the drain; closed")
            connection.abort()

    async def _sweep(self) -> None:
        """Timeouts: a pass over the connections every second (or a quarter of the
        shortest timeout), instead of a timer per request."""
        every = min(1.0, self.limits.request_timeout / 4, self.limits.keep_alive_timeout / 4)
        while True:
            await asyncio.sleep(every)
            now = self.loop.time()
            for connection in list(self.connections):
                try:
                    connection.check_timeouts(now)
                except Exception:  # one connection's bug must not end every timeout
                    log.exception("timeout check failed; connection dropped")
                    connection.abort()


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket. ``reuse_port``: several processes bind the same port
    and the kernel spreads connections over them evenly."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(
    app: ASGIApp,
    sockets: list[socket.socket],
    limits: Limits = Limits(),
    on_reject: RejectHook | None = None,
    direct: DirectHandler | None = None,
    exempt: Callable[[str], bool] | None = None,
    on_serving: Callable[[], None] | None = None,
) -> None:
    """Serve in this (main) thread on uvloop until SIGTERM/SIGINT; ``on_serving``: see ``HTTPServer.serve``."""
    server = HTTPServer(app, limits, on_reject, direct, exempt)
    try:
        import uvloop
    except ImportError:  # not on Windows; asyncio's loop works, more slowly
        asyncio.run(server.serve(sockets, on_serving=on_serving))
    else:
        uvloop.run(server.serve(sockets, on_serving=on_serving))
