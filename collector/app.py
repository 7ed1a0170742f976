"""The collector: the routes where a beacon enters (no framework; this is the hot path).

POST /collect      one beacon or a batch (JSON or text/plain, as sendBeacon sends)
POST /optout       a visitor objects: {"device_id": …} and/or {"mac": …}
GET  /collect.gif  the same beacon as query parameters; answers a 1×1 GIF
OPTIONS /collect   CORS preflight, for registered site origins only
POST /api/event    Plausible's Events API: the same beacons in Plausible's fields (collector/plausible.py)
GET  /beacon.js    the tracker script for site pages (collector/tracker_script.py)

Accepted beacons become ``RawEvent``s and are handed to a ``Handoff`` (the embedded
pipeline's queue, or the Kafka producer) without waiting for storage; the 202 waits
only for the group commit that makes them durable (``common.group_commit``). The process's
router (``web.routing``) serves these routes beside the others; the app is also an
ASGI app of its own, so any ASGI server can run it alone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import parse_qsl

import orjson

from collector import plausible
from collector.client_ip import ClientIPResolver
from collector.rate_limit import PerClientRateLimit
from collector.sites import SiteDirectory
from collector.tracker_script import TrackerScript
from common import clock, metrics
from common.group_commit import GroupCommit
from common.settings import Settings
from schemas.events import Beacon, RawEvent, RequestContext
from schemas.validation import MAX_BODY_BYTES, Rejection, parse_json_body, validate_beacon, validate_optout
from web import cors
from web.messages import Request, Response
from web.routing import Router, Routes, failed
from web.types import Answer, Deferred

log = logging.getLogger("beacon.collector")

PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
JSON_TYPES = (b"application/json", b"text/plain")
OPTOUT_MAX_BYTES = 4096


class Handoff(Protocol):
    def submit(self, events: list[RawEvent]) -> bool:
        """Take the events or return False when full (the collector then answers 503)."""

    def ready(self) -> bool:
        """False while what is taken cannot go on (the store refuses inserts, the
        spool's disk is full…): the collector answers 503 rather than take more."""

    def durable(self) -> GroupCommit | None:
        """The write the events just submitted wait for: their 202 waits for it
        (None: they are as safe as they will be already)."""


OptOut = Callable[[str, str], Awaitable[None]]  # (device_id, mac), either may be ""


class CollectorApp:
    def __init__(
        self,
        handoff: Handoff,
        sites: SiteDirectory,
        client_ip: ClientIPResolver,
        optout: OptOut | None = None,
        optout_limit: PerClientRateLimit | None = None,
    ):
        self.handoff = handoff
        self.sites = sites
        self.client_ip = client_ip
        self.optout = optout
        self.optout_limit = optout_limit or PerClientRateLimit(Settings.optout_per_minute, Settings.optout_burst)
        self._accepted_responses: dict[tuple[int, str], Response] = {}  # shared: never changed once made
        self.tracker = TrackerScript.packaged()
        self._asgi = Router(self.routes(), on_response=metrics.request_counter(self.routes()), direct=self.direct)

    def routes(self) -> Routes:
        routes: Routes = {
            ("POST", "/collect"): self.collect,
            ("GET", "/collect.gif"): self.collect_pixel,
            ("OPTIONS", "/collect"): self.preflight,
            ("POST", "/api/event"): self.plausible_event,
            ("OPTIONS", "/api/event"): self.preflight,
        } | self.tracker.routes()
        if self.optout is not None:
            routes[("POST", "/optout")] = self.record_optout
        return routes

    def body_limits(self) -> dict[str, int]:
        return {"/collect": MAX_BODY_BYTES, "/api/event": MAX_BODY_BYTES, "/optout": OPTOUT_MAX_BYTES}

    def ready_checks(self) -> dict[str, Callable[[], bool]]:
        return {"sites": lambda: self.sites.loaded, "pipeline": self.handoff.ready}

    async def __call__(self, scope, receive, send) -> None:
        await self._asgi(scope, receive, send)

    def direct(self, scope: dict, body: bytes) -> Answer | Deferred | None:
        """Our HTTP server's synchronous path (``web.types.DirectHandler``)
        for ``POST /collect``, nearly all of the traffic: the same answer as through
        ASGI, without ASGI's per-request coroutines and messages. None: use ASGI."""
        if scope["path"] != "/collect" or scope["method"] != "POST":
            return None
        try:
            response, commit = self._collect(Request(scope, None), body)
        except Exception as exc:
            response, commit = failed(scope, exc), None
        if commit is not None:
            return _AnswerWhenDurable(commit, response, lambda: self._overloaded(self._cors(_origin(scope))))
        metrics.collector_request(response.status)
        return response.answer()

    # --- beacons -----------------------------------------------------------------

    async def collect(self, request: Request) -> Response:
        response, commit = self._collect(request, await request.body(MAX_BODY_BYTES))
        return await self._when_durable(request, response, commit)

    def _collect(self, request: Request, body: bytes | None) -> tuple[Response, GroupCommit | None]:
        """``body`` is None when it exceeded MAX_BODY_BYTES while being read."""
        if request.media_type() not in JSON_TYPES:
            rejection = Rejection("content_type", "Content-Type must be application/json or text/plain", status=415)
            return self._refuse(request, rejection), None
        if body is None or len(body) > MAX_BODY_BYTES:
            return self._refuse(
                request, Rejection("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
            ), None
        parsed = parse_json_body(body)
        if isinstance(parsed, Rejection):
            return self._refuse(request, parsed), None
        return self._accept(request, parsed if isinstance(parsed, list) else [parsed], batch=isinstance(parsed, list))

    async def _when_durable(self, request: Request, response: Response, commit: GroupCommit | None) -> Response:
        """``response`` once the beacons it accepts are durable; 503 if their write failed."""
        if commit is None or await commit.wait():
            return response
        return self._overloaded(self._cors(request.header(b"origin").decode("latin-1")))

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
        response, commit = self._accept(request, [data], batch=False)
        response = await self._when_durable(request, response, commit)
        if response.status == 202:
            return Response(200, PIXEL, [(b"content-type", b"image/gif"), (b"cache-control", b"no-store")])
        return response

    async def record_optout(self, request: Request) -> Response:
        """An objection. A browser's (it names its Origin) comes from a registered site's
        page, as a beacon must: another site's page cannot opt a guessed ID out. Each
        client has a few at a time (``PerClientRateLimit``): each one is a row kept for
        the retention period."""
        origin = request.header(b"origin").decode("latin-1")
        if origin and origin not in self.sites.all_origins:
            return self._refuse(
                request, Rejection("origin_not_allowed", "this Origin is not registered for any site", status=403)
            )
        client = self._client(request)
        if not self.optout_limit.allow(client):
            metrics.rejected("rate_limited")
            retry = b"%d" % self.optout_limit.retry_after(client)
            return Response.json(
                429,
                {"error": "too many opt-outs from this client; retry later"},
                [(b"retry-after", retry)] + self._cors(origin),
            )
        if request.media_type() not in JSON_TYPES:
            return self._refuse(
                request, Rejection("content_type", "Content-Type must be application/json or text/plain", status=415)
            )
        body = await request.body(OPTOUT_MAX_BYTES)
        if body is None:
            return self._refuse(request, Rejection("too_large", f"body exceeds {OPTOUT_MAX_BYTES} bytes", status=413))
        parsed = parse_json_body(body)
        if isinstance(parsed, Rejection):
            return self._refuse(request, parsed)
        ids = validate_optout(parsed)
        if isinstance(ids, Rejection):
            return self._refuse(request, ids)
        await self.optout(*ids)
        metrics.optouts.inc()
        return Response.json(202, {"opted_out": True}, self._cors(request.header(b"origin").decode("latin-1")))

    async def plausible_event(self, request: Request) -> Response:
        """One event of Plausible's Events API, through the same checks as /collect."""
        cors_headers = self._cors(request.header(b"origin").decode("latin-1"))
        beacons = await self._plausible_beacons(request)
        if isinstance(beacons, Rejection):
            metrics.rejected(beacons.reason)
            return plausible.refused(beacons, cors_headers)
        accepted, rejections = self._admit(request, beacons)
        if accepted is None:
            return self._overloaded(cors_headers)
        if not accepted:
            return plausible.refused(rejections[0][1], cors_headers)
        accepted_answer = plausible.accepted(len(rejections), cors_headers)
        return await self._when_durable(request, accepted_answer, self.handoff.durable())

    async def _plausible_beacons(self, request: Request) -> list[dict] | Rejection:
        if request.media_type() not in JSON_TYPES:
            return Rejection("content_type", "Content-Type must be application/json or text/plain", status=415)
        body = await request.body(MAX_BODY_BYTES)
        if body is None:
            return Rejection("too_large", f"body exceeds {MAX_BODY_BYTES} bytes", status=413)
        parsed = parse_json_body(body)
        return parsed if isinstance(parsed, Rejection) else plausible.to_beacons(parsed)

    def _admit(self, request: Request, items: list) -> tuple[int | None, list[tuple[int, Rejection]]]:
        """Validate the beacons and hand the valid ones off, counting both: how many
        were taken (None: the handoff is full), and the rejections by index."""
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
            return 0, rejections
        context = self._context(request)
        events = [RawEvent(new_event_id(), b, context, self.sites.zone_of(b.site)) for b in beacons]
        # Not ready: accepted beacons would only pile up in memory (and be lost if the
        # process stopped) while the store or the spool cannot take them; a 503 makes
        # the client keep them and retry.
        if not self.handoff.ready() or not self.handoff.submit(events):
            metrics.rejected("overloaded", len(events))
            return None, rejections
        metrics.beacons_accepted(len(events))
        return len(events), rejections

    def _accept(self, request: Request, items: list, batch: bool) -> tuple[Response, GroupCommit | None]:
        """The answer, and the commit it must wait for when it accepts beacons."""
        origin = request.header(b"origin").decode("latin-1")
        accepted, rejections = self._admit(request, items)
        if accepted is None:
            return self._overloaded(self._cors(origin)), None
        if not accepted:
            index, first = rejections[0]
            body = first.body() | ({"index": index} if batch else {})
            return Response.json(first.status, body, self._cors(origin)), None
        if not rejections:
            return self._accepted(accepted, origin), self.handoff.durable()
        rejected = [{"index": i} | r.body() for i, r in rejections]
        response = Response.json(202, {"accepted": accepted, "rejected": rejected}, self._cors(origin))
        return response, self.handoff.durable()

    @staticmethod
    def _overloaded(cors_headers: list[tuple[bytes, bytes]]) -> Response:
        # A page's fetch can read Retry-After across origins only when it is exposed.
        expose = [(b"access-control-expose-headers", b"Retry-After")] if cors_headers else []
        return Response.json(
            503, {"error": "overloaded, retry later"}, [(b"retry-after", b"1")] + cors_headers + expose
        )

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

    def _client(self, request: Request) -> str:
        peer = request.scope["client"][0] if request.scope.get("client") else ""
        return self.client_ip.resolve(peer, request.header(self.client_ip.header).decode("latin-1"))

    def _context(self, request: Request) -> RequestContext:
        ip = self._client(request)
        # By position (received_at, ip, user_agent, accept_language, dnt, gpc):
        # matching six keywords costs ~0.5 µs a request.
        return RequestContext(
            clock.now(),
            ip,
            request.header(b"user-agent").decode("latin-1")[:1024],
            request.header(b"accept-language").decode("latin-1")[:256],
            request.header(b"dnt").strip() == b"1",
            request.header(b"sec-gpc").strip() == b"1",
        )

    def _refuse(self, request: Request, rejection: Rejection) -> Response:
        metrics.rejected(rejection.reason)
        return Response.json(
            rejection.status, rejection.body(), self._cors(request.header(b"origin").decode("latin-1"))
        )

    # --- CORS --------------------------------------------------------------------

    def _cors(self, origin: str) -> list[tuple[bytes, bytes]]:
        return cors.allow_origin(origin, self.sites.all_origins)

    async def preflight(self, request: Request) -> Response:
        return cors.preflight(request.header(b"origin").decode("latin-1"), self.sites.all_origins)


class _AnswerWhenDurable:
    """The direct path's 202, given once its beacons are durable (``web.types.Deferred``);
    a failed write makes it a 503, so the client keeps the beacons and retries."""

    __slots__ = ("commit", "response", "refusal")

    def __init__(self, commit: GroupCommit, response: Response, refusal: Callable[[], Response]):
        self.commit, self.response, self.refusal = commit, response, refusal

    def then(self, answer: Callable[[Answer], None]) -> None:
        def durable(ok: bool) -> None:
            response = self.response if ok else self.refusal()
            metrics.collector_request(response.status)
            answer(response.answer())

        self.commit.then(durable)


def _origin(scope: dict) -> str:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), "")


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_event_id() -> str:
    """A random (version 4) UUID, as text. Not uuid.uuid4(): its os.urandom call
    releases and re-takes the GIL for every beacon, which costs ~100 µs under load;
    event IDs need uniqueness, not secrecy. Not str(uuid.UUID(...)) either: building
    the object costs more than the 128 random bits (2.4 µs against 0.8)."""
    h = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
