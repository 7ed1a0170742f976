"""A request as the apps read it, and a response as they give it: the two types
every app mounted on the HTTP server shares (no framework; the collector's path is hot)."""

from __future__ import annotations

from typing import Any

import orjson

from web.types import Answer


class Request:
    __slots__ = ("scope", "_receive", "_headers")

    def __init__(self, scope, receive):
        self.scope = scope
        self._receive = receive
        self._headers = dict(scope["headers"])

    def header(self, name: bytes) -> bytes:
        return self._headers.get(name, b"")

    def media_type(self) -> bytes:
        """The Content-Type without its parameters, lower-case (b"application/json"
        for "Application/JSON; charset=utf-8"); empty when there is none. Media types
        are case-insensitive (RFC 9110 8.3.1)."""
        return self.header(b"content-type").split(b";", 1)[0].strip().lower()

    async def body(self, limit: int) -> bytes | None:
        """The whole body, or None once it grows past ``limit`` bytes."""
        declared = self.header(b"content-length")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        while True:
            message = await self._receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class Response:
    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or []

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        return cls(status, orjson.dumps(data), [(b"content-type", b"application/json")] + (headers or []))

    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        # A declared length spares the server chunked encoding (and a third write).
        # None on a 204, nor on a 304, whose length would be the 200's (RFC 9110 8.6).
        if self.status in (204, 304):
            return self.headers
        return self.headers + [(b"content-length", b"%d" % len(self.body))]

    def answer(self) -> Answer:
        """The whole response at once, for the server's direct path."""
        return self.status, self.wire_headers(), self.body

    async def send(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.wire_headers()})
        await send({"type": "http.response.body", "body": self.body})
