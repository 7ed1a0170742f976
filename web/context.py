"""What a connection is given of the server that accepted it (``ServerContext``):
the app, the limits, the admission of connections, the response-header cache and
clock, and whether the server is stopping. ``web.server`` owns one and hands it to
each ``web.connection.Connection``, which sees nothing else of the server: the
two modules import one way."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from email.utils import formatdate

from web.types import ASGIApp, DirectHandler, RejectHook


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16 * 1024  # request line and headers together
    max_body_bytes: int = 1 << 20  # any route's body, unless body_limits says less
    # Smaller limits for exact paths (the collector's /collect: 64 KiB), enforced from
    # the declared length before the body is read, and while it arrives.
    body_limits: tuple[tuple[str, int], ...] = ()
    request_timeout: float = 10.0  # first byte of a request → its last byte
    keep_alive_timeout: float = 5.0  # an idle connection is closed after this
    drain_timeout: float = 30.0  # on shutdown, for requests in progress
    max_pipelined: int = 32  # requests read ahead on one connection; reading pauses at half
    max_connections: int = 10_000  # open at once; more are answered 503 and closed
    max_connections_per_client: int = 256  # from one address (not counting exempt ones)

    def __post_init__(self) -> None:
        if self.max_pipelined < 1 or self.max_header_bytes < 1 or self.max_body_bytes < 0:
            raise ValueError("HTTP limits must be positive")
        if self.max_connections < 1 or self.max_connections_per_client < 1:
            raise ValueError("connection limits must be positive")

    def body_limit(self, path: bytes) -> int:
        for route, limit in self.body_limits:
            if path == route.encode():
                return limit
        return self.max_body_bytes


class Admission:
    """The open connections, counted per client address, and the caps on them."""

    def __init__(self, limits: Limits, exempt: Callable[[str], bool] | None = None):
        self.limits = limits
        self.connections: set[Hashable] = set()
        self.per_client: Counter[str] = Counter()  # open connections by client address
        # Addresses without a per-client cap (a reverse proxy carries many clients).
        self.exempt = exempt or (lambda address: False)

    def admit(self, connection: Hashable, address: str) -> str | None:
        """Count a new connection in; the reason to refuse it when it is over a cap."""
        self.connections.add(connection)
        self.per_client[address] += 1
        if len(self.connections) > self.limits.max_connections:
            return "too_many_connections"
        if self.per_client[address] > self.limits.max_connections_per_client and not self.exempt(address):
            return "too_many_client_connections"
        return None

    def release(self, connection: Hashable, address: str) -> None:
        """The connection closed: count it out."""
        self.connections.discard(connection)
        left = self.per_client[address] - 1
        if left > 0:
            self.per_client[address] = left
        else:
            del self.per_client[address]

    def forget(self, connection: Hashable) -> None:
        """An aborted connection: no longer open (its address is counted out when the
        transport reports it lost)."""
        self.connections.discard(connection)


class ServerContext:
    """The server as its connections see it."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        admission: Admission,
        on_reject: RejectHook | None = None,
        direct: DirectHandler | None = None,
    ):
        self.app = app
        self.direct = direct
        self.limits = limits
        self.admission = admission
        self.on_reject = on_reject or (lambda status, reason: None)
        self.clock = _Clock()
        self.stopping = False  # the server drains: requests read from now on close their connection
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the server starts serving
        self._header_lines: dict[tuple, tuple[bytes, bool]] = {}

    def header_lines(self, headers) -> tuple[bytes, bool]:
        """An app's response headers as they go on the wire, and whether they hold a
        Content-Length. Remembered: an app answers with the same few header sets
        again and again (the collector's 202)."""
        try:
            key = tuple(headers)
            return self._header_lines[key]
        except TypeError:  # an unhashable header (ASGI allows [name, value] lists)
            return encode_header_lines(headers)
        except KeyError:
            pass
        if len(self._header_lines) >= 256:
            self._header_lines.clear()
        encoded = self._header_lines[key] = encode_header_lines(key)
        return encoded


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


def encode_header_lines(headers) -> tuple[bytes, bool]:
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
