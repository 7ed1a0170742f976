"""The HTTP server against h11, the reference parser, on generated request streams.

Each example is a few requests on one keep-alive connection (pipelined, some
chunked, some malformed), sent in pieces cut at random byte boundaries. h11 reads
the same bytes; then:
- every request h11 accepts before its first error is answered 200 by the server,
  with the same method, target and body (the test app echoes them);
- from h11's first error on, the server answers 4xx or closes; never 5xx;
- the server answers within a deadline (no hang) and keeps serving others.

Examples: BEACON_FUZZ_EXAMPLES (default 150 in the suite), seeded, so a CI run is
repeatable; set BEACON_FUZZ_SEED to explore other streams.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlsplit

import h11
import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st

from tests.test_http_server import App, Running, read_response
from web.server import Limits

EXAMPLES = int(os.environ.get("BEACON_FUZZ_EXAMPLES", "150"))
SEED = int(os.environ.get("BEACON_FUZZ_SEED", "20261203"))
LIMITS = Limits(
    max_header_bytes=16 * 1024,
    max_body_bytes=8192,
    request_timeout=2.0,
    keep_alive_timeout=2.0,
    drain_timeout=5.0,
    max_pipelined=8,
)

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)
METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
# Under /f/: the test app's own paths (/boom, /none, …) behave otherwise on purpose.
TARGET = st.builds(
    lambda parts, query: "/f/" + "/".join(parts) + (f"?{query}" if query else ""),
    st.lists(TOKEN, max_size=3),
    st.one_of(st.just(""), st.builds("{}={}".format, TOKEN, TOKEN)),
)
HEADER = st.tuples(
    st.sampled_from(["x-a", "accept", "user-agent", "x-forwarded-for", "content-type", "origin"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ;=/,.-", max_size=30).map(str.strip),
)
BODY = st.binary(max_size=300)


@st.composite
def request(draw) -> bytes:
    method, target = draw(METHOD), draw(TARGET)
    headers = draw(st.lists(HEADER, max_size=4))
    body = draw(BODY) if method in ("POST", "PUT", "PATCH") else b""
    lines = [f"{method} {target} HTTP/1.1", "Host: fuzz"] + [f"{n}: {v}" for n, v in headers]
    if body and draw(st.booleans()):
        cut = draw(st.integers(1, len(body)))
        chunks = [body[:cut], body[cut:]] if cut < len(body) else [body]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        lines.append("Transfer-Encoding: chunked")
    else:
        framed = body
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + framed


@st.composite
def malformed(draw) -> bytes:
    """A request with one defect of the kinds clients and attackers send."""
    good = draw(request())
    kind = draw(st.sampled_from(["flip", "cut_line", "bad_length", "bad_chunk", "space_in_name", "no_host", "junk"]))
    if kind == "flip":
        at = draw(st.integers(0, len(good) - 1))
        return good[:at] + bytes([draw(st.integers(0, 255))]) + good[at + 1 :]
    if kind == "cut_line":
        return good.replace(b"\r\n", b"\n", 1).replace(b" HTTP/1.1", b"", 1)
    if kind == "bad_length":
        return good.replace(b"Host: fuzz", b"Host: fuzz\r\nContent-Length: -1", 1)
    if kind == "bad_chunk":
        return good.replace(b"Host: fuzz", b"Host: fuzz\r\nTransfer-Encoding: chunked", 1) + b"zz\r\n"
    if kind == "space_in_name":
        return good.replace(b"Host: fuzz", b"Host: fuzz\r\nBad Name: x", 1)
    if kind == "no_host":
        return good.replace(b"Host: fuzz\r\n", b"", 1)
    return draw(st.binary(min_size=1, max_size=80)) + b"\r\n\r\n"


STREAM = st.lists(st.one_of(request(), request(), malformed()), min_size=1, max_size=4)


# Where the server is stricter than h11, on purpose: llhttp refuses a method it does
# not know (nothing of ours answers one), control characters in a header value,
# which RFC 9110 forbids, and Transfer-Encoding beside Content-Length, which RFC 9112
# says "ought to be handled as an error" (request smuggling), and HTTP versions other
# than 1.0 and 1.1, and a request target that is none of RFC 9112's forms (h11 takes
# any bytes) or that holds a fragment ("#", which no form allows; llhttp would cut
# it off, so the app would see another target); h11 lets them through. And one way it is more lenient, as RFC 9112
# §2.2 asks: empty lines before a request line are skipped (h11 refuses them).
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}
CONTROL = bytes(c for c in range(32) if c != 9) + b"\x7f"


def bare_lf_in_head(request: bytes) -> bool:
    """A line of the head ended by LF alone: h11 takes it (RFC 9112 allows that),
    llhttp refuses it, which closes a door to request smuggling behind proxies."""
    head = request.split(b"\r\n\r\n", 1)[0]
    return b"\n" in head.replace(b"\r\n", b"")


def stricter_than_h11(request: h11.Request) -> bool:
    names = {name for name, _ in request.headers}
    target = request.target
    return (
        request.method.decode() not in KNOWN_METHODS
        or request.http_version not in (b"1.0", b"1.1")
        or not (target.startswith(b"/") or target == b"*" or b"://" in target)
        or b"#" in target
        or any(any(c in CONTROL for c in value) for _, value in request.headers)
        or {b"transfer-encoding", b"content-length"} <= names
    )


def reference(stream: bytes) -> tuple[list[tuple[str, str, bytes]], bool]:
    """What h11 reads: the complete requests before its first error, and whether it
    met one (a request the server is stricter about counts as one)."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(stream)
    parser.receive_data(b"")  # the client has sent everything
    accepted: list[tuple[str, str, bytes]] = []
    current, body = None, b""
    try:
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return accepted, False
            if isinstance(event, h11.Request):
                if stricter_than_h11(event):
                    return accepted, True
                current, body = event, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                accepted.append((current.method.decode(), current.target.decode(), body))
                parser.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                parser.send(h11.EndOfMessage())
                if parser.our_state is h11.MUST_CLOSE:
                    return accepted, False
                parser.start_next_cycle()
    except h11.RemoteProtocolError:
        return accepted, True


def send_in_pieces(conn: socket.socket, stream: bytes, cuts: list[int]) -> None:
    """Send ``stream`` cut at ``cuts``; stop where the server has closed (it may,
    once it refused a request)."""
    start = 0
    try:
        for cut in sorted({c % (len(stream) + 1) for c in cuts} | {len(stream)}):
            if cut > start:
                conn.sendall(stream[start:cut])
                start = cut
                time.sleep(0.001)  # lets the server read what came so far on its own
        conn.shutdown(socket.SHUT_WR)  # the client has sent everything
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


def answers(conn: socket.socket) -> tuple[list[tuple[int, bytes]], bool]:
    """Every response until the server closes, and whether it did close within the
    deadline (far above the time an answer takes: a hang fails)."""
    stream = conn.makefile("rb")
    out = []
    conn.settimeout(3.0)
    try:
        while True:
            status, _, body = read_response(stream)
            out.append((status, body))
    except TimeoutError:
        return out, False
    except (AssertionError, ConnectionResetError, ValueError):  # closed, or a response cut short by the close
        return out, True


@pytest.fixture(scope="module")
def running():
    server = Running(App(), LIMITS)
    server.thread.start()
    deadline = time.monotonic() + 5
    while "lifespan.startup" not in server.app.events and time.monotonic() < deadline:
        time.sleep(0.01)
    yield server
    server.stop()
    assert server.error is None


@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(requests=STREAM, cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_the_server_reads_requests_as_h11_does(running, requests, cuts):
    stream = b"".join(requests)
    skipped = [r.lstrip(b"\r\n") for r in requests]  # empty lines before a request line
    strict_from = next((i for i, r in enumerate(skipped) if bare_lf_in_head(r)), len(requests))
    expected, refused = reference(b"".join(skipped[:strict_from]))
    refused = refused or strict_from < len(requests)
    note(f"stream={stream!r} cuts={cuts} h11={expected} refused={refused}")
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as conn:
        send_in_pieces(conn, stream, cuts)
        got, closed = answers(conn)
    assert closed, got  # having answered, or refused, the server closes: the client sent all it would
    assert all(status < 500 for status, _ in got), got
    echoes = [(status, body) for status, body in got[: len(expected)]]
    for (method, target, body), (status, echo) in zip(expected, echoes):
        url = urlsplit(target)  # origin form (/p?q), or absolute (http://h/p?q): the app sees /p and q
        path, query = (url.path, url.query) if "://" in target else target.partition("?")[::2]
        assert (status, echo) == (200, b"%s %s %d %s" % (method.encode(), path.encode(), len(body), query.encode()))
    assert len(got) >= len(expected) or refused, (expected, got)  # an accepted request is answered
    if refused:
        assert all(400 <= status < 500 for status, _ in got[len(expected) :]), got
    assert running.thread.is_alive()
