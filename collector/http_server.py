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
- a request is read whole before the app runs, up to ``max_body_bytes`` (413
  beyond, also for chunked bodies); ``Expect: 100-continue`` is honoured;
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
import os
import signal
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Awaitable, Callable
from urllib.parse import unquote

import httptools

try:  # the kernel's unsent bytes of a socket (Linux; elsewhere only the transport's count)
    import fcntl
    import termios
    _SIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):
    _SIOCOUTQ = None

log = logging.getLogger("beacon.http")

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
# A whole response at once: status, headers (with content-length), body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
# An app's synchronous path for its busiest routes, given the scope and the whole
# body: the answer, or None for a request that goes through ASGI.
DirectHandler = Callable[[dict, bytes], "Answer | None"]
# Requests refused by the server itself (before any app saw them): status and a closed
# reason name, for metrics. Never the request's content.
RejectHook = Callable[[int, str], None]


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024  # request line and headers together
    max_body_bytes: int = 1 << 20
    request_timeout: float = 10.0  # first byte of a request → its last byte
    keep_alive_timeout: float = 5.0  # an idle connection is closed after this
    drain_timeout: float = 30.0  # on shutdown, for requests in progress
    max_pipelined: int = 32  # requests read ahead on one connection; reading pauses at half

    def __post_init__(self) -> None:
        if self.max_pipelined < 1 or self.max_header_bytes < 1 or self.max_body_bytes < 0:
            raise ValueError("HTTP limits must be positive")


class _Refusal(Exception):
    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_INTERNAL_ERROR = b'{"error":"internal error"}'
_INTERNAL_ERROR_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_INTERNAL_ERROR))]


class _Clock:
    """The ``Date`` header, formatted once a second rather than per response."""

    def __init__(self) -> None:
        self._second = 0
        self._header = b""

    def date_header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


class HTTPServer:
    def __init__(self, app: ASGIApp, limits: Limits = Limits(), on_reject: RejectHook | None = None,
                 direct: DirectHandler | None = None):
        self.app = app
        self.direct = direct
        self.limits = limits
        self.on_reject = on_reject or (lambda status, reason: None)
        self.clock = _Clock()
        self.connections: set[Connection] = set()
        self.stopping = False
        self._stop: asyncio.Event | None = None
        self._stop_requested = False  # before serve() made the event: from another thread
        self.loop: asyncio.AbstractEventLoop | None = None  # set by serve()
        self._header_lines: dict[tuple, tuple[bytes, bool]] = {}

    def header_lines(self, headers) -> tuple[bytes, bool]:
        """An app's response headers as they go on the wire, and whether they hold a
        Content-Length. Remembered: an app answers with the same few header sets
        again and again (the collector's 202), and encoding and checking them cost
        ~2 µs a response."""
        try:
            key = tuple(headers)
            return self._header_lines[key]
        except TypeError:  # an unhashable header (ASGI allows [name, value] lists)
            return _encode_header_lines(headers)
        except KeyError:
            pass
        if len(self._header_lines) >= 256:
            self._header_lines.clear()
        encoded = self._header_lines[key] = _encode_header_lines(key)
        return encoded

    # --- running ------------------------------------------------------------------

    async def serve(self, sockets: list[socket.socket], install_signal_handlers: bool = True,
                    on_serving: Callable[[], None] | None = None) -> None:
        """Run the app's startup, serve until asked to stop, drain, run its shutdown.
        Raises ``LifespanFailure`` when startup fails (nothing is served then).
        ``on_serving`` is called once the sockets accept connections."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.request_stop)
        lifespan = Lifespan(self.app)
        await lifespan.startup()
        servers = [await self.loop.create_server(lambda: Connection(self), sock=s, backlog=2048) for s in sockets]
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
        self.stopping = True
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


class LifespanFailure(RuntimeError):
    pass


class Lifespan:
    """Drives the app's ASGI lifespan scope: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._done: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._phase("startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._phase("shutdown")
            await self._task

    async def _phase(self, phase: str) -> None:
        self._done[phase] = asyncio.get_running_loop().create_future()
        await self._inbox.put({"type": f"lifespan.{phase}"})
        done, _ = await asyncio.wait([self._done[phase], self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._done[phase] not in done:  # the app returned or raised instead of answering
            error = self._task.exception()
            raise LifespanFailure(f"{phase} failed: {error!r}") from error
        message = self._done[phase].result()
        if message["type"].endswith(".failed"):
            raise LifespanFailure(f"{phase} failed: {message.get('message', '')}")

    async def _run(self) -> None:
        await self.app({"type": "lifespan", "asgi": _ASGI, "state": {}}, self._inbox.get, self._answer)

    async def _answer(self, message: dict) -> None:
        phase = message["type"].split(".")[1]
        self._done[phase].set_result(message)


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app for each in order."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.limits = server.limits
        self._pause_at = max(1, self.limits.max_pipelined // 2)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server_address: tuple | None = None
        self.client_address: tuple | None = None
        self.fd: int | None = None  # the socket's, valid while the transport is not closing
        self.pending: deque[Exchange | _Refusal] = deque()
        self.current: Exchange | None = None  # the request the app is answering
        self.task: asyncio.Task | None = None  # ... and the task running the app, if it waits
        self.closing = False  # no more requests are read; close once the queue is done
        self.reading_paused = False
        self.writable: asyncio.Event = asyncio.Event()
        self.writable.set()
        # A peer that does not read: since when (loop time) the output is blocked, or
        # close() waits for it, without the peer reading any of it.
        self.write_blocked_since: float | None = None
        self.closed_at: float | None = None
        self.output_seen = 0  # bytes waiting to be sent, at the last check of a stalled peer
        # The request being read:
        self.started_at: float | None = None  # loop time of its first byte
        self.in_head = False  # between its first byte and the end of its headers
        self.head_received = 0
        self.idle_since = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        self.idle_since = self.server.loop.time()
        server = transport.get_extra_info("sockname")
        client = transport.get_extra_info("peername")
        self.server_address = tuple(server[:2]) if isinstance(server, tuple) else None
        self.client_address = tuple(client[:2]) if isinstance(client, tuple) else None
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self.writable.set()  # a writer waiting for the peer to read gives up
        if self.current is not None:
            self.current.end()

    def data_received(self, data: bytes) -> None:
        # httptools gathers a header in memory until it ends, before passing it on:
        # feed it slices, and stop once the head has taken more slices than a whole
        # head may hold (the count starts at a slice boundary, hence the factor 2).
        step = self.limits.max_header_bytes
        if len(data) <= step:
            self._feed(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), step):
                self._feed(view[start:start + step])
        if self.current is None and self.pending:  # not from a parser callback: the app may run now
            self._next()

    def _feed(self, data: bytes | memoryview) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stop_reading()  # what follows is not HTTP; answer what was read, then close
        except httptools.HttpParserCallbackError as exc:
            context = exc.__context__
            self._refuse(context if isinstance(context, _Refusal) else _Refusal(400, "bad_request"))
        except httptools.HttpParserError:
            if not self.closing:  # llhttp also refuses bytes after a "Connection: close" request
                self._refuse(_Refusal(400, "bad_request"))
            return
        if self.in_head and not self.closing:
            self.head_received += len(data)
            if self.head_received > 2 * self.limits.max_header_bytes:
                self._refuse(_Refusal(431, "headers_too_large"))

    def write(self, data: bytes) -> None:
        """Send ``data`` (the transport must not be closing: the descriptor could
        be another connection's by then). Straight to the socket when nothing waits
        before it: os.write lets go of the GIL during the system call, the largest
        single cost of a request on loopback, while uvloop's write holds it; the
        collector's other threads run meanwhile (+11 %, docs/benchmarks.md). What
        the socket does not take goes to the transport."""
        if self.fd is not None and not self.transport.get_write_buffer_size():
            try:
                sent = os.write(self.fd, data)
            except OSError:  # full (EAGAIN), or broken: the transport meets it again and acts
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.writable.clear()
        self.write_blocked_since = self.server.loop.time()

    def resume_writing(self) -> None:
        self.writable.set()
        self.write_blocked_since = None

    # --- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiting() >= self.limits.max_pipelined:
            raise _Refusal(429, "too_many_pipelined")  # parsed no further: nothing more is kept
        self.started_at = self.server.loop.time()
        self.in_head = True
        self.head_received = 0
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.body = []
        self.body_bytes = 0

    # The URL and the headers count against max_header_bytes. (Counted inline: these
    # run a dozen times a request.)
    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Refusal(414, "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Refusal(431, "headers_too_large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.limits.max_body_bytes:
                raise _Refusal(413, "too_large")
            if name == b"expect" and value.lower() == b"100-continue" and self.current is None and not self.pending:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limits.max_body_bytes:
            raise _Refusal(413, "too_large")
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.closing:  # a request after one that ended the connection: not answered
            return
        self.started_at = None
        parser = self.parser
        keep_alive = parser.should_keep_alive() and not self.server.stopping
        self.pending.append(Exchange(self, self._scope(parser), b"".join(self.body), keep_alive))
        if not keep_alive:
            self._stop_reading()
        elif self._waiting() >= self._pause_at and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _waiting(self) -> int:
        """Requests read that wait for another's answer. The first request of what
        was received runs once all of it is parsed: it does not count as waiting."""
        return len(self.pending) - (self.current is None and bool(self.pending))

    def _scope(self, parser: httptools.HttpRequestParser) -> dict:
        url = httptools.parse_url(self.url)
        raw_path = url.path or b""
        path = raw_path.decode("latin-1")
        return {
            "type": "http", "asgi": _ASGI, "scheme": "http", "root_path": "",
            "server": self.server_address, "client": self.client_address,
            "http_version": parser.get_http_version(),
            "method": parser.get_method().decode("ascii"),
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self.headers,
        }

    # --- answering, in order -------------------------------------------------------------

    def _next(self) -> None:
        """Start the app on the next waiting request, or settle the connection."""
        self.current = None
        if self.pending:
            item = self.pending.popleft()
            if isinstance(item, _Refusal):
                self._write_refusal(item)
                return
            self.current = item
            if self.reading_paused and len(self.pending) < self._pause_at:
                self.reading_paused = False
                self.transport.resume_reading()
                if self.started_at is not None:  # the client could not send while we did not read
                    self.started_at = self.server.loop.time()
            self._run(item)
        elif self.closing:
            self.transport.close()
        else:
            self.idle_since = self.server.loop.time()

    def _run(self, exchange: Exchange) -> None:
        """Run the app's first step now, as Python 3.12's eager tasks do: the collector
        answers in it (it never waits), and that spares each request a task and a turn
        of the event loop (~5 % of the collector's CPU). An app that waits goes on in a
        task."""
        if self.server.direct is not None and self.writable.is_set() and self._answer_directly(exchange):
            return
        run = exchange.run()
        try:
            awaited = run.send(None)
        except StopIteration:
            return
        # Held here: the loop keeps only a weak reference to a task.
        self.task = self.server.loop.create_task(_finish(run, awaited))

    def _answer_directly(self, exchange: Exchange) -> bool:
        """The app's synchronous path, if it has one for this request: no ASGI
        messages, coroutines or task (~9 % of the collector's instructions)."""
        try:
            answer = self.server.direct(exchange.scope, exchange.body)
        except Exception as exc:  # a bug in the app: as on the ASGI path, 500 and close
            log.exception("request failed", extra={"error": type(exc).__name__})
            exchange.keep_alive = False
            answer = 500, _INTERNAL_ERROR_HEADERS, _INTERNAL_ERROR
        if answer is None:
            return False
        exchange.answer(*answer)
        self.finished(exchange)
        return True

    def finished(self, exchange: Exchange) -> None:
        if not exchange.keep_alive or self.transport.is_closing():
            self.closing = True
            self.pending.clear()
            self.transport.close()
            return
        self._next()

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer a request the server will not pass on, after those before it, then close."""
        self.server.on_reject(refusal.status, refusal.reason)
        self._stop_reading()
        self.pending.append(refusal)
        if self.current is None:
            self._next()

    def _write_refusal(self, refusal: _Refusal) -> None:
        body = b'{"error":"%s"}' % refusal.reason.encode()
        self.transport.write(
            _STATUS_LINES[refusal.status] + self.server.clock.date_header()
            + b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        self.closing = True
        self.pending.clear()
        self.transport.close()

    def _stop_reading(self) -> None:
        self.closing = True
        self.started_at = None

    # --- timeouts and shutdown -----------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        closing = self.transport.is_closing()
        if closing and self.closed_at is None:
            self.closed_at = now
        if self._stalled_too_long(now):
            self.abort()
        elif closing:
            pass  # closing already: nothing more to time
        elif self.started_at is not None and not self.reading_paused and now - self.started_at > self.limits.request_timeout:
            self._refuse(_Refusal(408, "request_timeout"))
        elif (self.current is None and not self.pending and self.started_at is None
              and now - self.idle_since > self.limits.keep_alive_timeout):
            self.transport.close()

    def _stalled_too_long(self, now: float) -> bool:
        """Whether output has waited ``request_timeout`` for a peer that reads none of
        it. Such a peer would otherwise hold the connection, and what is queued on
        it, for ever (close() too waits for the output to drain). A peer that reads
        slowly makes progress, and its clock restarts."""
        stalled = self.write_blocked_since if self.write_blocked_since is not None else self.closed_at
        if stalled is None:
            return False
        output = self._output_waiting()
        if output < self.output_seen:
            stalled = now
            if self.write_blocked_since is not None:
                self.write_blocked_since = now
            if self.closed_at is not None:
                self.closed_at = now
        self.output_seen = output
        return now - stalled > self.limits.request_timeout

    def _output_waiting(self) -> int:
        """Bytes not yet sent: the transport's buffer and the kernel's (which holds
        megabytes, so the transport's own shrinks only in large, rare steps)."""
        size = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None and _SIOCOUTQ is not None:
            try:
                size += struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
            except (OSError, ValueError):
                pass
        return size

    def close_when_idle(self) -> None:
        """Shutdown: finish the requests already read (or being read), then close."""
        if self.current is None and not self.pending and self.started_at is None:
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()
        self.server.connections.discard(self)


class Exchange:
    """One request and its response: the ``receive`` and ``send`` the app is given."""

    __slots__ = ("connection", "scope", "body", "keep_alive", "head", "chunked", "no_body",
                 "started", "complete", "_body_given", "_ended")

    def __init__(self, connection: Connection, scope: dict, body: bytes, keep_alive: bool):
        self.connection = connection
        self.scope = scope
        self.body = body
        self.keep_alive = keep_alive
        self.head = b""  # the status line and headers, written with the first body part
        self.chunked = False
        self.no_body = False  # a HEAD request, or a status without a body
        self.started = False  # http.response.start was sent
        self.complete = False  # the last body part was sent
        self._body_given = False
        self._ended: asyncio.Future | None = None  # made only for an app that waits for the end

    async def run(self) -> None:
        try:
            await self._run_app()
        finally:
            if not self.complete:  # the app stopped mid-response: only closing tells the client
                self.keep_alive = False
            self.connection.finished(self)

    async def _run_app(self) -> None:
        try:
            await self.connection.server.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.connection.transport.is_closing():  # e.g. the client left while the app wrote
                log.warning("request failed after the client left", extra={"error": type(exc).__name__})
                return
            log.exception("request failed", extra={"error": type(exc).__name__})
            if not self.started:
                await self._send_error()
        else:
            if not self.started:
                log.error("the app returned without a response")
                await self._send_error()

    async def receive(self) -> dict:
        if not self._body_given:
            self._body_given = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        # The body was all given: the next event is the end of the exchange (the
        # response was sent, or the client left).
        if not self.complete and not self.connection.transport.is_closing():
            if self._ended is None:
                self._ended = self.connection.server.loop.create_future()
            await self._ended
        return {"type": "http.disconnect"}

    def end(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.head = self._encode_head(message["status"], message.get("headers", ()))
            self.started = True
            return
        if kind != "http.response.body" or not self.started or self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        more = message.get("more_body", False)
        if not more:
            self.complete = True
            self.end()
        transport = self.connection.transport
        if not self.connection.writable.is_set():  # the client is not reading: wait
            await self.connection.writable.wait()
        if transport.is_closing():
            return  # the client left, or was dropped: nothing to tell it
        body = b"" if self.no_body else message.get("body", b"")
        if self.chunked:
            body = _chunk(body, last=not more)
        if self.head:
            body, self.head = self.head + body, b""
        if body:
            transport.write(body)

    def answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole response in one write: the direct path (``DirectHandler``)."""
        head = self._encode_head(status, headers)
        self.started = self.complete = True
        if self.no_body:
            body = b""
        elif self.chunked:
            body = _chunk(body, last=True)
        if not self.connection.transport.is_closing():
            self.connection.write(head + body)

    def _encode_head(self, status: int, headers) -> bytes:
        method, version = self.scope["method"], self.scope["http_version"]
        self.no_body = method == "HEAD" or status in _NO_BODY_STATUSES
        server = self.connection.server
        app_lines, length_known = server.header_lines(headers)
        lines = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status, server.clock.date_header(), app_lines]
        if not length_known and not self.no_body:
            if version == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        if server.stopping and not self.connection.pending:
            self.keep_alive = False  # the last request read before the stop: then close
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif version == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def _send_error(self) -> None:
        self.keep_alive = False
        await self.send({"type": "http.response.start", "status": 500, "headers": _INTERNAL_ERROR_HEADERS})
        await self.send({"type": "http.response.body", "body": _INTERNAL_ERROR})


def _encode_header_lines(headers) -> tuple[bytes, bool]:
    lines = []
    length_known = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            length_known = True
        elif lowered == b"connection":
            continue  # the server decides
        lines.append(b"%s: %s\r\n" % (name, value))
    encoded = b"".join(lines)
    if encoded.count(b"\n") != len(lines) or encoded.count(b"\r") != len(lines):
        raise ValueError("a response header contains a line break")  # it would forge headers
    return encoded, length_known


def _chunk(body: bytes, last: bool) -> bytes:
    """A body part in chunked encoding (an empty part is not a chunk: it would end the body)."""
    return (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"0\r\n\r\n" if last else b"")


async def _finish(coroutine, awaited):
    """The rest of a coroutine whose first step is done and waits on ``awaited``."""
    return await _Resumed(coroutine, awaited)


class _Resumed:
    """Awaitable that hands the task what the coroutine waits on, and the task's
    answers (a result, or an exception such as CancelledError) back to it."""

    __slots__ = ("coroutine", "awaited")

    def __init__(self, coroutine, awaited):
        self.coroutine = coroutine
        self.awaited = awaited

    def __await__(self):
        awaited = self.awaited
        while True:
            try:
                answer = yield awaited
            except BaseException as exc:
                resume, value = self.coroutine.throw, exc
            else:
                resume, value = self.coroutine.send, answer
            try:
                awaited = resume(value)
            except StopIteration as stop:
                return stop.value


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


def run(app: ASGIApp, sockets: list[socket.socket], limits: Limits = Limits(),
        on_reject: RejectHook | None = None, direct: DirectHandler | None = None) -> None:
    """Serve in this (main) thread on uvloop until SIGTERM/SIGINT."""
    server = HTTPServer(app, limits, on_reject, direct)
    try:
        import uvloop
    except ImportError:  # not on Windows; asyncio's loop works, more slowly
        asyncio.run(server.serve(sockets))
    else:
        uvloop.run(server.serve(sockets))
