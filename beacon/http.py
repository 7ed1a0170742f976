"""How every beacon process serves HTTP: its address, limits and metrics, from the settings.

The server itself is ``web.server``; this module only configures it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable

from collector.client_ip import ClientIPResolver
from common import metrics
from common.settings import Settings
from web.routing import Router
from web.server import HTTPServer, Limits, listen
from web.server import run as run_server

log = logging.getLogger("beacon.http")


def limits(settings: Settings, app: Router) -> Limits:
    return Limits(
        keep_alive_timeout=settings.http_keep_alive,
        body_limits=tuple(app.body_limits.items()),
        max_connections=settings.max_connections,
        max_connections_per_client=settings.max_connections_per_client,
    )


def proxies(settings: Settings) -> Callable[[str], bool]:
    """Trusted proxies carry many clients: no per-client connection cap for them."""
    return ClientIPResolver(settings.trusted_proxy).is_trusted


def count_refusal(status: int, reason: str) -> None:
    """A request the HTTP server refused before any app saw it (400, 408, 413, 414, 431)."""
    metrics.rejected(reason)
    metrics.collector_request(status)


def serve(
    app: Router, settings: Settings, sock: socket.socket | None = None, on_serving: Callable[[], None] | None = None
) -> None:
    """Serve in the main thread until SIGTERM/SIGINT, then drain and run the app's shutdown.
    ``on_serving`` is called once the app started and the socket accepts connections."""
    metrics_server = metrics_listener(app, settings)
    try:
        run_server(
            app,
            [sock or listen(settings.host, settings.port)],
            limits(settings, app),
            count_refusal,
            direct=app.direct,
            exempt=proxies(settings),
            on_serving=on_serving,
        )
    finally:
        if metrics_server is not None:
            metrics_server.stop()


METRICS_ROUTE = ("GET", "/metrics")


def metrics_listener(app: Router, settings: Settings) -> BackgroundServer | None:
    """Takes /metrics off the public port when ``--metrics-listen`` says so, and serves
    it on a listener of its own (a thread of this process) when that is HOST:PORT.
    HTTP workers of ``serve --workers N`` each bind it (SO_REUSEPORT): any of them
    answers with every process's figures (prometheus_client's multiprocess mode)."""
    if not settings.metrics_listen:
        return None
    handler = app.routes.pop(METRICS_ROUTE)
    if settings.metrics_listen == "off":
        return None
    host, port = settings.metrics_address()
    server = BackgroundServer(
        Router({METRICS_ROUTE: handler}), settings, listen(host, port, reuse_port=settings.workers > 1)
    )
    server.start()
    return server


class BackgroundServer:
    """The HTTP server in a thread of its own (its own event loop, no signal handlers),
    for processes whose main thread belongs to something else (Faust)."""

    def __init__(self, app: Router, settings: Settings, sock: socket.socket | None = None):
        self.server = HTTPServer(app, limits(settings, app), count_refusal, direct=app.direct, exempt=proxies(settings))
        self.socket = sock or listen(settings.host, settings.port)  # bound now: a port in use fails here
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve([self.socket], install_signal_handlers=False, on_serving=self._started.set))
        except Exception as exc:
            self._error = exc
            log.exception("the HTTP server stopped")
        finally:
            self._started.set()

    def start(self, timeout: float = 120) -> None:
        """Returns once the server listens; raises when its start-up failed."""
        self.thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the HTTP server did not start within {timeout:.0f} s")
        if self._error is not None or not self.thread.is_alive():
            raise RuntimeError(f"the HTTP server did not start: {self._error}") from self._error

    def stop(self, timeout: float = 30) -> None:
        if self.thread.is_alive():
            self.server.request_stop_threadsafe()
            self.thread.join(timeout)
