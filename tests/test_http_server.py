"""web.server, over raw sockets: what clients and attackers can send."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest
import uvloop

from web.server import HTTPServer, LifespanFailure, Limits, listen

LIMITS = Limits(
    max_header_bytes=2048,
    max_body_bytes=4096,
    request_timeout=0.6,
    keep_alive_timeout=0.6,
    drain_timeout=5.0,
    max_pipelined=4,
)


class App:
    """An ASGI app with one route per behaviour under test; it records what it saw."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        body = (await receive())["body"]
        if path == "/boom":
            raise RuntimeError("a bug")
        if path == "/none":
            return
        if path == "/slow":
            await asyncio.sleep(0.4)
            self.events.append("slow done")
        if path == "/disconnect":
            self.events.append((await receive())["type"])
            return
        if path == "/inject":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nset-cookie: x")]})
            return
        if path == "/huge":  # one write, as the privacy API's exports are sent
            data = b"h" * (6 << 20)
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(data))]}
            )
            await send({"type": "http.response.body", "body": data})
            return
        if path in ("/stream", "/big"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            part = b"x" * (1 << 20) if path == "/big" else b"part"
            for _ in range(32 if path == "/big" else 2):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            self.events.append(f"{path} sent")
            return
        text = b"%s %s %d %s" % (scope["method"].encode(), scope["raw_path"], len(body), scope["query_string"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(text))],
            }
        )
        await send({"type": "http.response.body", "body": text})


class Running:
    def __init__(self, app: App, limits: Limits = LIMITS, direct=None):
        self.app = app
        self.refused: list[tuple[int, str]] = []
        self.server = HTTPServer(app, limits, lambda status, reason: self.refused.append((status, reason)), direct)
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            uvloop.run(self.server.serve([self.sock], install_signal_handlers=False))  # as in production
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def stop(self) -> None:
        self.server.request_stop_threadsafe()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def server():
    running = Running(App())
    running.thread.start()
    deadline = time.monotonic() + 5
    while "lifespan.startup" not in running.app.events and time.monotonic() < deadline:
        time.sleep(0.01)
    yield running
    running.stop()


def read_response(stream) -> tuple[int, dict[str, str], bytes]:
    """One response from a socket's buffered reader (so pipelined ones can follow)."""
    status_line = stream.readline()
    assert status_line, "connection closed before a response"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if status < 200 or status in (204, 304):
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, stream.read(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int(stream.readline(), 16)) > 0:
            body += stream.read(size)
            stream.readline()
        stream.readline()
        return status, headers, body
    return status, headers, stream.read()  # delimited by the end of the connection


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def closed(conn: socket.socket) -> bool:
    conn.settimeout(3)
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def post(path: str, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (path.encode(), len(body), extra, body)


def test_keep_alive_and_pipelining_answer_in_order(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    # The first request makes the app wait; the others are already read.
    conn.sendall(post("/slow", b"a") + post("/one?x=1", b"bb") + post("/two", b"ccc") + post("/three"))
    answers = [read_response(stream) for _ in range(4)]
    assert [a[2] for a in answers] == [b"POST /slow 1 ", b"POST /one 2 x=1", b"POST /two 3 ", b"POST /three 0 "]
    assert all(a[0] == 200 and "connection" not in a[1] and "date" in a[1] for a in answers)
    conn.sendall(post("/again"))  # the connection is still usable
    assert read_response(stream)[2] == b"POST /again 0 "


def test_reading_pauses_while_requests_wait_and_resumes(server):
    # Two requests wait behind the slow one: reading pauses (max_pipelined 4 / 2), so
    # the next three are read only as the queue empties. Were they read at once, the
    # queue would pass its limit of 4 and the client would get 429.
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(post("/slow") + post("/0") + post("/1"))
    time.sleep(0.1)
    conn.sendall(post("/2") + post("/3") + post("/4"))
    bodies = [read_response(stream)[2] for _ in range(6)]
    assert bodies == [b"POST /slow 0 "] + [b"POST /%d 0 " % i for i in range(5)]


def test_more_pipelined_requests_than_the_limit_at_once_get_429(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(post("/slow") + b"".join(post(f"/{i}") for i in range(200)))
    answers = [read_response(stream) for _ in range(6)]
    # The slow one runs, 4 wait (the limit), the sixth is refused; nothing more is kept.
    assert [a[2] for a in answers[:5]] == [b"POST /slow 0 "] + [b"POST /%d 0 " % i for i in range(4)]
    assert (answers[5][0], answers[5][1]["connection"]) == (429, "close") and closed(conn)
    assert server.refused == [(429, "too_many_pipelined")]


def test_http10_closes_unless_kept_alive(server):
    conn = server.connect()
    conn.sendall(b"GET /a HTTP/1.0\r\n\r\n")
    stream = conn.makefile("rb")
    status, headers, body = read_response(stream)
    assert (status, body, headers["connection"]) == (200, b"GET /a 0 ", "close") and closed(conn)

    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert read_response(stream)[1]["connection"] == "keep-alive"
    conn.sendall(b"GET /b HTTP/1.0\r\n\r\n")
    assert read_response(stream)[2] == b"GET /b 0 " and closed(conn)


def test_connection_close_ends_the_connection_and_ignores_what_follows(server):
    conn = server.connect()
    conn.sendall(post("/a", extra=b"Connection: close\r\n") + post("/b"))
    stream = conn.makefile("rb")
    status, headers, body = read_response(stream)
    assert (status, body, headers["connection"]) == (200, b"POST /a 0 ", "close")
    assert stream.read() == b""  # no answer to /b, no 400 either


def test_chunked_request_body(server):
    conn = server.connect()
    conn.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    assert read_response(conn.makefile("rb"))[2] == b"POST /c 7 "


def test_expect_100_continue(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert read_response(stream)[0] == 100
    conn.sendall(b"hello")
    assert read_response(stream)[2] == b"POST /e 5 "


def test_body_over_the_limit_is_refused_before_it_is_read(server):
    conn = server.connect()
    conn.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4097\r\nExpect: 100-continue\r\n\r\n")
    status, headers, body = read_response(conn.makefile("rb"))
    assert (status, headers["connection"], body) == (413, "close", b'{"error":"too_large"}') and closed(conn)

    conn = server.connect()
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    conn.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk)
    assert read_response(conn.makefile("rb"))[0] == 413
    assert server.refused == [(413, "too_large")] * 2


def test_header_and_url_limits(server):
    conn = server.connect()
    conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"y" * 3000 + b"\r\n\r\n")
    assert read_response(conn.makefile("rb"))[0] == 431

    conn = server.connect()
    conn.sendall(b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(conn.makefile("rb"))[0] == 414

    # One header that never ends, in one large write: the parser is fed slices, and
    # the head is refused after twice its limit rather than gathered whole.
    conn = server.connect()
    conn.sendall(b"GET / HTTP/1.1\r\nX-Endless: " + b"z" * 200_000)
    assert read_response(conn.makefile("rb"))[0] == 431

    # ... and sent in pieces.
    conn = server.connect()
    conn.sendall(b"GET / HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        try:
            conn.sendall(b"z" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.01)
    assert read_response(conn.makefile("rb"))[0] == 431


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        # Request smuggling: both lengths at once.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_the_connection_closes(server, request_bytes):
    conn = server.connect()
    conn.sendall(request_bytes)
    status, headers, _ = read_response(conn.makefile("rb"))
    assert (status, headers["connection"]) == (400, "close") and closed(conn)
    assert server.refused == [(400, "bad_request")]


def test_a_slow_request_times_out_with_408(server):
    conn = server.connect()
    conn.sendall(b"POST /slowloris HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    started = time.monotonic()
    status = read_response(conn.makefile("rb"))[0]
    assert status == 408 and LIMITS.request_timeout <= time.monotonic() - started < 3
    assert closed(conn)


def test_idle_connections_are_closed_after_the_keep_alive_timeout(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(post("/a"))
    assert read_response(stream)[0] == 200
    started = time.monotonic()
    assert closed(conn) and LIMITS.keep_alive_timeout <= time.monotonic() - started < 3
    assert not server.server.connections


def test_app_failures_get_500_and_the_server_goes_on(server):
    for path in ("/boom", "/none", "/inject", "/inject"):  # twice: a refused header set is not remembered
        conn = server.connect()
        conn.sendall(post(path))
        status, headers, body = read_response(conn.makefile("rb"))
        assert (status, body, headers["connection"]) == (500, b'{"error":"internal error"}', "close"), path
        assert "set-cookie" not in headers
    conn = server.connect()
    conn.sendall(post("/fine"))
    assert read_response(conn.makefile("rb"))[0] == 200


def test_head_gets_headers_only(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" + post("/after"))
    status_line = stream.readline()
    headers = []
    while (line := stream.readline()) != b"\r\n":
        headers.append(line)
    assert status_line.startswith(b"HTTP/1.1 200") and b"content-length: 10\r\n" in headers
    assert read_response(stream)[2] == b"POST /after 0 "  # no body bytes came in between


def test_responses_without_length_are_chunked_or_end_the_connection(server):
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = read_response(stream)
    assert (headers["transfer-encoding"], body) == ("chunked", b"partpart")
    conn.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, body = read_response(stream)
    assert (headers["connection"], body) == ("close", b"partpart")


def test_the_app_learns_that_the_client_left(server):
    conn = server.connect()
    conn.sendall(post("/disconnect"))
    time.sleep(0.1)
    conn.close()
    deadline = time.monotonic() + 3
    while "http.disconnect" not in server.app.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "http.disconnect" in server.app.events


def test_writing_waits_for_a_client_that_does_not_read(server):
    conn = server.connect()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    conn.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.5)
    assert "/big sent" not in server.app.events  # 32 MiB cannot all be buffered: the app waits
    status, _, body = read_response(conn.makefile("rb"))
    assert (status, len(body)) == (200, 32 << 20)
    assert "/big sent" in server.app.events


def test_a_client_that_does_not_read_is_dropped_after_the_timeout(server):
    conn = server.connect()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: any(c.write_blocked_since for c in server.server.connections))
    blocked = time.monotonic()
    assert wait_for(lambda: not server.server.connections)  # aborted: its buffers are freed
    assert time.monotonic() - blocked >= LIMITS.request_timeout - 0.1


def test_a_slow_reader_of_a_large_response_is_not_cut_off(server):
    # 6 MiB at ~2.5 MB/s: far longer than the 0.6 s timeout, but always progressing.
    conn = server.connect()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    conn.sendall(b"GET /huge HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    received = b""
    while chunk := conn.recv(128 * 1024):
        received += chunk
        time.sleep(0.05)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == 6 << 20


def test_a_request_waiting_behind_slow_answers_is_not_timed_out(server):
    # While answers are slow, reading pauses: the rest of a request that arrives
    # then is not read, which is no fault of the client (no 408).
    conn = server.connect()
    stream = conn.makefile("rb")
    conn.sendall(
        post("/slow") + post("/slow") + post("/slow") + b"POST /last HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n"
    )
    time.sleep(0.05)
    conn.sendall(b"abc")
    statuses = [read_response(stream)[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 200]  # 1.2 s of slow answers > the 0.6 s request timeout


def test_stop_finishes_requests_in_progress_then_runs_the_shutdown():
    running = Running(App())
    running.thread.start()
    time.sleep(0.2)
    busy, idle = running.connect(), running.connect()
    busy.sendall(post("/slow") + post("/queued"))  # both read before the stop
    time.sleep(0.1)
    running.server.request_stop_threadsafe()
    stream = busy.makefile("rb")
    status, headers, body = read_response(stream)
    assert (status, body, "connection" in headers) == (200, b"POST /slow 0 ", False)
    status, headers, body = read_response(stream)
    assert (status, body, headers["connection"]) == (200, b"POST /queued 0 ", "close")
    assert closed(idle) and closed(busy)
    running.thread.join(5)
    assert running.app.events == ["lifespan.startup", "slow done", "lifespan.shutdown"]
    with pytest.raises(OSError):
        running.connect()


def test_a_failed_startup_serves_nothing():
    class Failing(App):
        async def __call__(self, scope, receive, send):
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no store"})

    running = Running(Failing())
    running.thread.start()
    running.thread.join(5)
    assert isinstance(running.error, LifespanFailure) and "no store" in str(running.error)
    assert not running.server.connections
    conn = running.connect()  # the socket is bound, but nobody serves it
    conn.sendall(post("/a"))
    conn.settimeout(0.5)
    with pytest.raises(socket.timeout):
        conn.recv(1)


def test_a_client_leaving_while_its_response_waits_is_not_an_error(server, caplog):
    conn = server.connect()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_for(lambda: any(c.write_blocked_since for c in server.server.connections))
    conn.close()  # while the app waits for it to read
    assert wait_for(lambda: not server.server.connections and "/big sent" in server.app.events)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def direct_handler(scope: dict, body: bytes):
    """The synchronous path of an app, for /direct* only."""
    if not scope["path"].startswith("/direct"):
        return None
    if scope["path"] == "/direct-boom":
        raise RuntimeError("a bug")
    if scope["path"] == "/direct-unsized":
        return 200, [], b"no length"
    if scope["path"].startswith("/direct-big/"):  # more than a socket buffer takes at once
        text = scope["path"][-1].encode() * (4 << 20)
        return 200, [(b"content-length", b"%d" % len(text))], text
    text = b"direct %s %d" % (scope["raw_path"], len(body))
    return 201, [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(text))], text


@pytest.fixture
def direct_server():
    running = Running(App(), direct=direct_handler)
    running.thread.start()
    yield running
    running.stop()


def test_the_direct_path_answers_in_order_with_the_asgi_one(direct_server):
    conn = direct_server.connect()
    stream = conn.makefile("rb")
    # A slow ASGI answer first: the direct requests behind it wait their turn.
    conn.sendall(post("/slow") + post("/direct/a", b"xy") + post("/plain", b"z") + post("/direct/b"))
    answers = [read_response(stream) for _ in range(4)]
    assert [(a[0], a[2]) for a in answers] == [
        (200, b"POST /slow 0 "),
        (201, b"direct /direct/a 2"),
        (200, b"POST /plain 1 "),
        (201, b"direct /direct/b 0"),
    ]
    assert answers[1][1]["content-type"] == "text/plain" and "date" in answers[1][1]
    assert "connection" not in answers[3][1]  # kept alive
    conn.sendall(post("/direct/c", extra=b"Connection: close\r\n"))
    status, headers, body = read_response(stream)
    assert (status, body, headers["connection"]) == (201, b"direct /direct/c 0", "close") and closed(conn)
    assert "slow done" in direct_server.app.events  # the ASGI app saw the others


def test_the_direct_path_without_a_length_is_chunked(direct_server):
    conn = direct_server.connect()
    stream = conn.makefile("rb")
    conn.sendall(post("/direct-unsized") + post("/direct/after"))
    status, headers, body = read_response(stream)
    assert (status, body, headers["transfer-encoding"]) == (200, b"no length", "chunked")
    assert read_response(stream)[2] == b"direct /direct/after 0"


def test_a_failing_direct_path_gets_500_and_the_server_goes_on(direct_server):
    conn = direct_server.connect()
    stream = conn.makefile("rb")
    conn.sendall(post("/direct-boom"))
    status, headers, body = read_response(stream)
    assert (status, body, headers["connection"]) == (500, b'{"error":"internal error"}', "close") and closed(conn)
    conn = direct_server.connect()
    conn.sendall(post("/direct/again"))
    assert read_response(conn.makefile("rb"))[2] == b"direct /direct/again 0"


def test_a_direct_answer_larger_than_the_socket_takes_arrives_whole_and_first(direct_server):
    """The socket takes what it can of an answer; the transport sends the rest,
    and the next answer waits behind it (given by ASGI, once the peer reads)."""
    conn = direct_server.connect()
    conn.sendall(post("/direct-big/a") + post("/direct/c"))
    time.sleep(0.3)  # nothing read yet: the socket's buffer fills
    stream = conn.makefile("rb")
    assert read_response(stream)[2] == b"a" * (4 << 20)
    assert read_response(stream)[2] in (b"direct /direct/c 0", b"POST /direct/c 0 ")


# --- the edge: Host, Content-Length, body limits per route, connection caps ---------------


@pytest.mark.parametrize(
    "request_bytes, reason",
    [
        (b"POST /e HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", "missing_host"),
        # A second Content-Length, equal or not: llhttp refuses it while parsing.
        (b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", "bad_request"),
        (b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhihi!", "bad_request"),
        # A fragment in the target: llhttp would cut it off, the app would see /e.
        (b"GET /e#/admin HTTP/1.1\r\nHost: t\r\n\r\n", "bad_request"),
    ],
)
def test_requests_a_proxy_could_read_otherwise_get_400(server, request_bytes, reason):
    conn = server.connect()
    conn.sendall(request_bytes)
    status, headers, body = read_response(conn.makefile("rb"))
    assert (status, headers["connection"]) == (400, "close") and closed(conn)
    assert server.refused == [(400, reason)] and reason.encode() in body


def test_http_1_0_needs_no_host(server):
    conn = server.connect()
    conn.sendall(b"POST /e HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    assert read_response(conn.makefile("rb"))[0] == 200


def test_a_route_body_limit_refuses_before_the_body_is_read():
    running = Running(App(), Limits(max_body_bytes=4096, body_limits=(("/small", 10),)))
    running.thread.start()
    try:
        conn = running.connect()
        conn.sendall(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")  # no body sent
        assert read_response(conn.makefile("rb"))[0] == 413 and closed(conn)
        conn = running.connect()  # chunked: counted as it arrives
        conn.sendall(
            b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
        )
        assert read_response(conn.makefile("rb"))[0] == 413
        conn = running.connect()  # another path keeps the server's limit
        conn.sendall(post("/e", b"x" * 100))
        assert read_response(conn.makefile("rb"))[0] == 200
        assert running.refused == [(413, "too_large"), (413, "too_large")]
    finally:
        running.stop()


def test_connections_over_the_caps_get_503_at_once():
    running = Running(App(), Limits(max_connections=6, max_connections_per_client=3))
    running.thread.start()
    try:
        kept = [running.connect() for _ in range(3)]
        extra = running.connect()  # a fourth from the same address
        status, headers, body = read_response(extra.makefile("rb"))
        assert (status, headers["connection"]) == (503, "close") and b"too_many_client_connections" in body
        assert wait_for(lambda: len(running.server.connections) == 3)
        for conn in kept:  # the others still work
            conn.sendall(post("/e", b"ok"))
            assert read_response(conn.makefile("rb"))[0] == 200
        kept.pop().close()
        assert wait_for(lambda: running.server.per_client["127.0.0.1"] == 2)
        again = running.connect()  # room again
        again.sendall(post("/e", b"ok"))
        assert read_response(again.makefile("rb"))[0] == 200
        assert running.refused == [(503, "too_many_client_connections")]
    finally:
        running.stop()


def test_exempt_addresses_count_only_against_the_total():
    running = Running(App(), Limits(max_connections=4, max_connections_per_client=1))
    running.server.exempt = lambda address: address == "127.0.0.1"
    running.thread.start()
    try:
        kept = [running.connect() for _ in range(4)]
        for conn in kept:
            conn.sendall(post("/e", b"ok"))
            assert read_response(conn.makefile("rb"))[0] == 200
        fifth = running.connect()
        status, _, body = read_response(fifth.makefile("rb"))
        assert status == 503 and b"too_many_connections" in body
    finally:
        running.stop()


def test_a_get_route_answers_head_with_its_headers_and_no_body_and_a_304_declares_no_length(tmp_path):
    """RFC 9110: HEAD is answered wherever GET is (9.3.2), with the GET answer's
    headers and no body; a 304 carries no Content-Length of its own (8.6)."""
    from tests.server import BeaconServer

    with BeaconServer(tmp_path) as server:
        for path in ("/beacon.js", "/dashboard", "/healthz", "/api/v1/stats/realtime/visitors"):
            got, head = httpx.get(server.url + path), httpx.head(server.url + path)
            assert head.status_code == got.status_code, path
            assert head.content == b"" and head.headers.get("content-length") == got.headers.get("content-length"), path
        script = httpx.get(server.url + "/beacon.js")
        revalidated = httpx.get(server.url + "/beacon.js", headers={"if-none-match": script.headers["etag"]})
        assert revalidated.status_code == 304 and "content-length" not in revalidated.headers
        refused = httpx.delete(server.url + "/beacon.js")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
