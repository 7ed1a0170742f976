"""The collector: a plain ASGI app (no framework; this is the hot path).

POST /collect      one beacon or a batch (JSON or text/plain, as sendBeacon sends)
POST /optout       a visitor objects: {"device_id": …} and/or {"mac": …}
GET  /collect.gif  the same beacon as query parameters; answers a 1×1 GIF
OPTIONS /collect   CORS preflight, for registered site origins only
GET  /healthz /readyz /metrics

Accepted beacons become ``RawEvent``s and are handed to a ``Handoff`` (the embedded
pipeline's queue, or the Kafka producer) without waiting for storage. Without a
handoff (``beacon serve --kafka``: the collectors are elsewhere) only the
operations routes are served.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Awaitable, Callable, Protocol
from urllib.parse import parse_qsl

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from beacon import metrics
from collector.client_ip import ClientIPResolver
from collector.http_server import Answer
from collector.sites import SiteDirectory
from collector.validation import MAX_BODY_BYTES, Rejection, parse_json_body, validate_beacon, validate_optout
from schemas.events import Beacon, RawEvent, RequestContext

log = logging.getLogger("beacon.collector")

PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
JSON_TYPES = (b"application/json", b"text/plain")


class Handoff(Protocol):
    def submit(self, events: list[RawEvent]) -> bool:
        """Take the events or return False when full (the collector then answers 503)."""

    def ready(self) -> bool: ...


Hook = Callable[[], Awaitable[None] | None]
ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
OptOut = Callable[[str, str], Awaitable[None]]  # (device_id, mac), either may be ""


class CollectorApp:
    def __init__(
        self,
        handoff: Handoff | None,
        sites: SiteDirectory | None,
        client_ip: ClientIPResolver,
        on_startup: list[Hook] | None = None,
        on_shutdown: list[Hook] | None = None,
        optout: OptOut | None = None,
        mounts: dict[str, ASGIApp] | None = None,
    ):
        self.handoff = handoff
        self.sites = sites
        self.client_ip = client_ip
        self.on_startup = on_startup or []
        self.on_shutdown = on_shutdown or []
        self.optout = optout
        # Other apps served beside the collector, by path prefix (e.g. "/api/").
        self.mounts = mounts or {}
        self.ready_checks: dict[str, Callable[[], bool]] = {}
        self._accepted_responses: dict[tuple[int, str], Response] = {}  # shared: never changed once made
        self._routes = {
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.metrics,
        }
        if handoff is not None:
            self._routes |= {
                ("POST", "/collect"): self.collect,
                ("GET", "/collect.gif"): self.collect_pixel,
                ("OPTIONS", "/collect"): self.preflight,
            }
            self.ready_checks |= {"sites": lambda: sites.loaded, "pipeline": handoff.ready}
        if optout is not None:
            self._routes[("POST", "/optout")] = self.record_optout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        for prefix, app in self.mounts.items():
            if scope["path"].startswith(prefix):
                await app(scope, receive, send)
                return
        request = Request(scope, receive)
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            status = 405 if any(path == scope["path"] for _, path in self._routes) else 404
            response = Response.json(status, {"error": "not found" if status == 404 else "method not allowed"})
        else:
            try:
                response = await handler(request)
            except Exception as exc:
                response = _failed(scope, exc)
        metrics.collector_request(response.status)
        await response.send(send)

    def direct(self, scope: dict, body: bytes) -> Answer | None:
        """Our HTTP server's synchronous path (``collector.http_server.DirectHandler``)
        for ``POST /collect``, nearly all of the traffic: the same answer as through
        ASGI, without ASGI's per-request coroutines and messages. None: use ASGI."""
        if scope["path"] != "/collect" or scope["method"] != "POST" or self.handoff is None:
            return None
        try:
            response = self._collect(Request(scope, None), body)
        except Exception as exc:
            response = _failed(scope, exc)
        metrics.collector_request(response.status)
        return response.status, response.wire_headers(), response.body

    # --- beacons -----------------------------------------------------------------

    async def collect(self, request: Request) -> Response:
        return self._collect(request, await request.body(MAX_BODY_BYTES))

    def _collect(self, request: Request, body: bytes | None) -> Response:
        """``body`` is None when it exceeded MAX_BODY_BYTES while being read."""
        content_type = request.header(b"content-type").split(b";", 1)[0].strip().lower()
        if content_type not in JSON_TYPES:
            return self._refuse(request, Rejection("content_type", "Content-Type must be application/json or text/plain", status=415))
        if body is None or len(body) > MAX_BODY_BYTES:
            return self._refuse(request, Rejection("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413))
        parsed = parse_json_body(body)
        if isinstance(parsed, Rejection):
            return self._refuse(request, parsed)
        return self._accept(request, parsed if isinstance(parsed, list) else [parsed], batch=isinstance(parsed, list))

    async def collect_pixel(self, request: Request) -> Response:
        data: dict = dict(parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=False))
        for key in ("props", "consent"):
            if key in data:
                try:
                    data[key] = orjson.loads(data[key])
                except orjson.JSONDecodeError:
                    return self._refuse(request, Rejection("invalid_json", f"{key} must be JSON", key))
        ts = data.get("ts")
        if ts is not None and ts.isascii() and ts.isdigit() and len(ts) <= 16:
            data["ts"] = int(ts)  # else the schema refuses the text ("²" is a digit too, int() fails on it)
        response = self._accept(request, [data], batch=False)
        if response.status == 202:
            return Response(200, PIXEL, [(b"content-type", b"image/gif"), (b"cache-control", b"no-store")])
        return response

    async def record_optout(self, request: Request) -> Response:
        content_type = request.header(b"content-type").split(b";", 1)[0].strip().lower()
        if content_type not in JSON_TYPES:
            return self._refuse(request, Rejection("content_type", "Content-Type must be application/json or text/plain", status=415))
        body = await request.body(4096)
        if body is None:
            return self._refuse(request, Rejection("too_large", "body exceeds 4096 bytes", status=413))
        parsed = parse_json_body(body)
        if isinstance(parsed, Rejection):
            return self._refuse(request, parsed)
        ids = validate_optout(parsed)
        if isinstance(ids, Rejection):
            return self._refuse(request, ids)
        await self.optout(*ids)
        metrics.optouts.inc()
        return Response.json(202, {"opted_out": True}, self._cors(request.header(b"origin").decode("latin-1")))

    def _accept(self, request: Request, items: list, batch: bool) -> Response:
        origin = request.header(b"origin").decode("latin-1")
        domains = self.sites.domains
        beacons: list[Beacon] = []
        rejections: list[tuple[int, Rejection]] = []
        for index, item in enumerate(items):
            result = validate_beacon(item, domains)
            if isinstance(result, Beacon) and origin and not self.sites.origin_allowed(result.site, origin):
                result = Rejection("origin_not_allowed", "this Origin is not registered for the site", "site", 403)
            if isinstance(result, Rejection):
                metrics.rejected(result.reason)
                rejections.append((index, result))
            else:
                beacons.append(result)
        if not beacons:
            index, first = rejections[0]
            body = first.body() | ({"index": index} if batch else {})
            return Response.json(first.status, body, self._cors(origin))
        context = self._context(request)
        events = [RawEvent(new_event_id(), b, context) for b in beacons]
        if not self.handoff.submit(events):
            metrics.rejected("overloaded", len(events))
            return Response.json(503, {"error": "overloaded, retry later"}, [(b"retry-after", b"1")] + self._cors(origin))
        metrics.beacons_accepted(len(events))
        if not rejections:
            return self._accepted(len(events), origin)
        rejected = [{"index": i} | r.body() for i, r in rejections]
        return Response.json(202, {"accepted": len(events), "rejected": rejected}, self._cors(origin))

    def _accepted(self, count: int, origin: str) -> Response:
        """The answer to nearly every beacon request, made once per count and origin
        (~1.5 µs a request). An origin that no site registers keys as none: what
        clients send cannot grow this."""
        key = (count, origin if origin in self.sites.all_origins else "")
        response = self._accepted_responses.get(key)
        if response is None:
            if len(self._accepted_responses) >= 4096:
                self._accepted_responses.clear()
            response = self._accepted_responses[key] = Response.json(202, {"accepted": count}, self._cors(key[1]))
        return response

    def _context(self, request: Request) -> RequestContext:
        peer = request.scope["client"][0] if request.scope.get("client") else ""
        ip = self.client_ip.resolve(
            peer,
            request.header(b"x-forwarded-for").decode("latin-1"),
            request.header(b"forwarded").decode("latin-1"),
        )
        # By position (received_at, ip, user_agent, accept_language, dnt, gpc):
        # matching six keywords costs ~0.5 µs a request.
        return RequestContext(
            time.time(),
            ip,
            request.header(b"user-agent").decode("latin-1")[:1024],
            request.header(b"accept-language").decode("latin-1")[:256],
            request.header(b"dnt").strip() == b"1",
            request.header(b"sec-gpc").strip() == b"1",
        )

    def _refuse(self, request: Request, rejection: Rejection) -> Response:
        metrics.rejected(rejection.reason)
        return Response.json(rejection.status, rejection.body(), self._cors(request.header(b"origin").decode("latin-1")))

    # --- CORS --------------------------------------------------------------------

    def _cors(self, origin: str) -> list[tuple[bytes, bytes]]:
        if origin and origin in self.sites.all_origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        return []

    async def preflight(self, request: Request) -> Response:
        cors = self._cors(request.header(b"origin").decode("latin-1"))
        if not cors:
            return Response.json(403, {"error": "origin not registered"})
        return Response(204, b"", cors + [
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"Content-Type"),
            (b"access-control-max-age", b"86400"),
        ])

    # --- operations --------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return Response.json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks = {name: check() for name, check in self.ready_checks.items()}
        return Response.json(200 if all(checks.values()) else 503, {"ready": all(checks.values()), "checks": checks})

    async def metrics(self, request: Request) -> Response:
        return Response(200, metrics.exposition(), [(b"content-type", CONTENT_TYPE_LATEST.encode())])

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


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_event_id() -> str:
    """A random (version 4) UUID, as text. Not uuid.uuid4(): its os.urandom call
    releases and re-takes the GIL for every beacon, which costs ~100 µs under load;
    event IDs need uniqueness, not secrecy. Not str(uuid.UUID(...)) either: building
    the object costs more than the 128 random bits (2.4 µs against 0.8)."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Request:
    __slots__ = ("scope", "_receive", "_headers")

    def __init__(self, scope, receive):
        self.scope = scope
        self._receive = receive
        self._headers = dict(scope["headers"])

    def header(self, name: bytes) -> bytes:
        return self._headers.get(name, b"")

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
    def json(cls, status: int, data: dict, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        return cls(status, orjson.dumps(data), [(b"content-type", b"application/json")] + (headers or []))

    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        # A declared length spares the server chunked encoding (and a third write).
        return self.headers if self.status == 204 else self.headers + [(b"content-length", b"%d" % len(self.body))]

    async def send(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.wire_headers()})
        await send({"type": "http.response.body", "body": self.body})


def _failed(scope: dict, exc: Exception) -> Response:
    """A bug: answer 500, and log it (without request data); the caller counts it."""
    log.exception("request failed", extra={"route": scope["path"], "error": type(exc).__name__})
    return Response.json(500, {"error": "internal error"})
