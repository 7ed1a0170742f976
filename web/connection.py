"""One client connection of the HTTP server: parsing (httptools), requests answered
in order, timeouts, back-pressure, and the bytes of each response."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote

import httptools

from web.context import ServerContext
from web.edge import NOSNIFF, edge_header_lines
from web.trampoline import finish
from web.types import ASGI_VERSION, Answer

try:  # the kernel's unsent bytes of a socket (Linux; elsewhere only the transport's count)
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):
    _SIOCOUTQ = None

log = logging.getLogger("beacon.http")


class _Refusal(Exception):
    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason


_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))
_INTERNAL_ERROR = b'{"error":"internal error"}'
_INTERNAL_ERROR_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_INTERNAL_ERROR))]


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app for each in order."""

    def __init__(self, context: ServerContext):
        self.context = context
        self.limits = context.limits
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
        self.body_limit = self.limits.max_body_bytes

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.idle_since = self.context.loop.time()
        server = transport.get_extra_info("sockname")
        client = transport.get_extra_info("peername")
        self.server_address = tuple(server[:2]) if isinstance(server, tuple) else None
        self.client_address = tuple(client[:2]) if isinstance(client, tuple) else None
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else None
        self._count_in()

    def _count_in(self) -> None:
        """Refuse a connection over the caps at once: no parsing, no timers, 503."""
        reason = self.context.admission.admit(self, self._client_host())
        if reason is not None:
            self.context.on_reject(503, reason)
            self._write_refusal(_Refusal(503, reason))

    def _client_host(self) -> str:
        return self.client_address[0] if self.client_address else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.context.admission.release(self, self._client_host())
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
                self._feed(view[start : start + step])
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
        self.write_blocked_since = self.context.loop.time()

    def resume_writing(self) -> None:
        self.writable.set()
        self.write_blocked_since = None

    # --- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiting() >= self.limits.max_pipelined:
            raise _Refusal(429, "too_many_pipelined")  # parsed no further: nothing more is kept
        self.started_at = self.context.loop.time()
        self.in_head = True
        self.head_received = 0
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.body = []
        self.body_bytes = 0
        self.body_limit = self.limits.max_body_bytes

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
        if self.limits.body_limits:
            self.body_limit = self.limits.body_limit(httptools.parse_url(self.url).path or b"")
        host = False
        for name, value in self.headers:
            if name == b"content-length":  # one at most: llhttp refuses a second (tests/test_http_server.py)
                if value.isdigit() and int(value) > self.body_limit:
                    raise _Refusal(413, "too_large")
            elif name == b"host":
                host = True
            elif name == b"expect" and value.lower() == b"100-continue" and self.current is None and not self.pending:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):  # llhttp reads a request line without a version as 0.9
            raise _Refusal(400, "bad_request")
        if b"#" in self.url:  # RFC 9112 §3.2: no fragment in a request target (llhttp would drop it silently)
            raise _Refusal(400, "bad_request")
        if not host and version == "1.1":
            raise _Refusal(400, "missing_host")

    def on_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.body_limit:
            raise _Refusal(413, "too_large")
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.closing:  # a request after one that ended the connection: not answered
            return
        self.started_at = None
        parser = self.parser
        keep_alive = parser.should_keep_alive() and not self.context.stopping
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
            "type": "http",
            "asgi": ASGI_VERSION,
            "scheme": "http",
            "root_path": "",
            "server": self.server_address,
            "client": self.client_address,
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
                    self.started_at = self.context.loop.time()
            self._run(item)
        elif self.closing:
            self.transport.close()
        else:
            self.idle_since = self.context.loop.time()

    def _run(self, exchange: Exchange) -> None:
        """Run the app's first step now, as Python 3.12's eager tasks do: the collector
        answers in it (it never waits), and that spares each request a task and a turn
        of the event loop (~5 % of the collector's CPU). An app that waits goes on in a
        task."""
        if self.context.direct is not None and self.writable.is_set() and self._answer_directly(exchange):
            return
        run = exchange.run()
        try:
            awaited = run.send(None)
        except StopIteration:
            return
        # Held here: the loop keeps only a weak reference to a task.
        self.task = self.context.loop.create_task(finish(run, awaited))

    def _answer_directly(self, exchange: Exchange) -> bool:
        """The app's synchronous path, if it has one for this request: no ASGI
        messages, coroutines or task (~9 % of the collector's instructions)."""
        try:
            answer = self.context.direct(exchange.scope, exchange.body)
        except Exception as exc:  # a bug in the app: as on the ASGI path, 500 and close
            log.exception("request failed", extra={"error": type(exc).__name__})
            exchange.keep_alive = False
            answer = 500, _INTERNAL_ERROR_HEADERS, _INTERNAL_ERROR
        if answer is None:
            return False
        if type(answer) is tuple:
            exchange.answer(*answer)
            self.finished(exchange)
        else:
            answer.then(lambda later: self._answer_later(exchange, later))
        return True

    def _answer_later(self, exchange: Exchange, answer: Answer) -> None:
        """A deferred direct answer, now known (from the event loop's thread)."""
        exchange.answer(*answer)
        if self.current is exchange:
            self.finished(exchange)

    def finished(self, exchange: Exchange) -> None:
        if not exchange.keep_alive or self.transport.is_closing():
            self.closing = True
            self.pending.clear()
            self.transport.close()
            return
        self._next()

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer a request the server will not pass on, after those before it, then close."""
        self.context.on_reject(refusal.status, refusal.reason)
        self._stop_reading()
        self.pending.append(refusal)
        if self.current is None:
            self._next()

    def _write_refusal(self, refusal: _Refusal) -> None:
        body = b'{"error":"%s"}' % refusal.reason.encode()
        self.transport.write(
            _STATUS_LINES[refusal.status]
            + self.context.clock.date_header()
            + NOSNIFF
            + b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
            + body
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
        elif (
            self.started_at is not None
            and not self.reading_paused
            and now - self.started_at > self.limits.request_timeout
        ):
            self._refuse(_Refusal(408, "request_timeout"))
        elif (
            self.current is None
            and not self.pending
            and self.started_at is None
            and now - self.idle_since > self.limits.keep_alive_timeout
        ):
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
        self.context.admission.forget(self)


class Exchange:
    """One request and its response: the ``receive`` and ``send`` the app is given."""

    __slots__ = (
        "connection",
        "scope",
        "body",
        "keep_alive",
        "head",
        "chunked",
        "no_body",
        "started",
        "complete",
        "_body_given",
        "_ended",
    )

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
            await self.connection.context.app(self.scope, self.receive, self.send)
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
                self._ended = self.connection.context.loop.create_future()
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
        context = self.connection.context
        app_lines, length_known = context.header_lines(headers)
        # admission.exempt is the trusted-proxy test of every beacon process (beacon.http.proxies).
        edge_lines = edge_header_lines(self.scope, status, headers, context.admission.exempt)
        lines = [
            _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
            context.clock.date_header(),
            app_lines,
            edge_lines,
        ]
        if not length_known and not self.no_body:
            if version == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        if context.stopping and not self.connection.pending:
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


def _chunk(body: bytes, last: bool) -> bytes:
    """A body part in chunked encoding (an empty part is not a chunk: it would end the body)."""
    return (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"0\r\n\r\n" if last else b"")
