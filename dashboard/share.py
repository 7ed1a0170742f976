"""The ASGI app mounted at /share/: shared links, a read-only dashboard of one site
with no sign-in (``storage.shares``).

    GET  /share/SECRET[?embed=true]  the dashboard's page, in its shared form
    GET  /share/SECRET/about         the site it shows, as the signed-in page's session
    POST /share/SECRET/unlock        {"password": "…"} → a pass, for a link with a password

The page reads its figures from the Stats API with an ``X-Beacon-Share`` header
holding the secret, or the pass of a password link (``authenticate``): the caller then
acts as an analyst of that one site, on reads only, so it gets that site's aggregates
and nothing else (never event-level rows, the privacy API or another site). No
cookie: a cookie would not reach a page framed by another site (an embed), and the
header cannot be sent by a page of another origin without CORS, which beacon grants
to none.

Each answer says ``X-Robots-Tag: noindex`` (and the page has the meta tag). A
revoked or expired link is refused (410), and so is every request of a page already
open with it. Reads through shares and password attempts are rate-limited per
client, in this process's memory (``collector.rate_limit``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from collector.client_ip import ClientIPResolver
from collector.rate_limit import PerClientRateLimit
from common import metrics
from dashboard.assets import Assets
from dashboard.security import SECURITY_HEADERS, Proxies, framed_by, same_origin
from storage.shares import Share, ShareCache, pass_for, pass_opens, password_matches
from storage.tokens import Token
from web.messages import Request, Response
from web.routing import failed

log = logging.getLogger("beacon.dashboard")

PREFIX = "/share/"
SHARE_HEADER = b"x-beacon-share"
NOINDEX = (b"x-robots-tag", b"noindex, nofollow")
PASS_SECONDS = 12 * 3600
MAX_UNLOCK_BYTES = 2048
PASSWORD_BURST = 5
_READS = ("GET", "HEAD")


class ShareApp:
    def __init__(
        self,
        describe: Callable[[str], Any],
        shares: ShareCache,
        assets: Assets,
        proxies: Proxies,
        client_ip: ClientIPResolver,
        reads: PerClientRateLimit,
        passwords: PerClientRateLimit,
        clock: Callable[[], float] = time.time,
    ):
        self.describe = describe  # site → what the page needs of it (dashboard.app)
        self.shares = shares
        self.assets = assets
        self.proxies = proxies
        self.client_ip = client_ip
        self.reads = reads
        self.passwords = passwords
        self.clock = clock

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        secret, _, action = scope["path"][len(PREFIX) :].partition("/")
        try:
            response = await self._answer(request, secret, action)
        except Exception as exc:
            response = failed(scope, exc)
        metrics.api_request("share_" + (action if action in ("about", "unlock") else "page"), response.status)
        response.headers.append(NOINDEX)
        if not any(name == b"content-security-policy" for name, _ in response.headers):
            response.headers.extend(SECURITY_HEADERS)
        await response.send(send)

    async def _answer(self, request: Request, secret: str, action: str) -> Response:
        method = request.scope["method"]
        allowed = "POST" if action == "unlock" else "GET, HEAD"
        if action not in ("", "about", "unlock"):
            return Response.json(404, {"error": "not found"})
        if method not in allowed.split(", "):
            return Response.json(405, {"error": "method not allowed"}, [(b"allow", allowed.encode())])
        share = await self._live(secret)
        if isinstance(share, Response):
            return _refusal_page(share.status) if action == "" and share.status in REFUSALS else share
        if action == "unlock":
            return await self.unlock(request, share, secret)
        if action == "about":
            return await self.about(request, share, secret)
        return self.page(request, share)

    def page(self, request: Request, share: Share) -> Response:
        response = self.assets.page(request)
        embedded = _query_flag(request, "embed")
        response.headers.extend(framed_by(share.embed_origins if embedded else ()))
        return response

    async def about(self, request: Request, share: Share, secret: str) -> Response:
        if not self._opens(share, secret, request.header(SHARE_HEADER).decode("latin-1")):
            return _password_required(share)
        described = await _off_loop(self.describe, share.site)
        body = described | {"share": {"id": share.id, "password": share.has_password, "expires_at": share.expires_at}}
        return Response.json(200, body, [(b"cache-control", b"no-store")])

    async def unlock(self, request: Request, share: Share, secret: str) -> Response:
        if not same_origin(request, self.proxies.scheme(request)):
            return Response.json(403, {"error": "a password is accepted from this link's own page only"})
        client = self._client(request)
        if not self.passwords.allow(client):
            wait = str(self.passwords.retry_after(client)).encode()
            return Response.json(429, {"error": "too many attempts: wait, then retry"}, [(b"retry-after", wait)])
        if request.media_type() != b"application/json":
            return Response.json(415, {"error": 'send {"password": "…"} as application/json'})
        body = await request.body(MAX_UNLOCK_BYTES)
        if body is None:
            return Response.json(413, {"error": "too large"})
        password = _password_field(body)
        if password is None:
            return Response.json(400, {"error": 'send {"password": "…"}', "field": "password"})
        if not share.has_password:
            return Response.json(409, {"error": "this link has no password"})
        if not await _off_loop(password_matches, share, password):
            log.info("shared link: wrong password", extra={"share": share.id})
            return Response.json(403, {"error": "wrong password"})
        until = int(self.clock()) + PASS_SECONDS
        if share.expires_at:
            until = min(until, share.expires_at)
        return Response.json(
            200, {"pass": pass_for(share, secret, until), "until": until}, [(b"cache-control", b"no-store")]
        )

    async def authenticate(self, request: Request) -> Token | Response:
        """The caller of a Stats API route with an ``X-Beacon-Share`` header: an analyst
        of the share's site, on reads only; or the answer that refuses it."""
        if request.scope["method"] not in _READS:
            return Response.json(403, {"error": "a shared link only reads statistics"})
        if request.header(b"authorization"):
            return Response.json(400, {"error": "send a token or a shared link, not both", "header": "authorization"})
        client = self._client(request)
        if not self.reads.allow(client):
            wait = str(self.reads.retry_after(client)).encode()
            return Response.json(429, {"error": "too many requests through shared links"}, [(b"retry-after", wait)])
        presented = request.header(SHARE_HEADER).decode("latin-1").strip()
        secret = presented.partition(".")[0]
        share = await self._live(secret)
        if isinstance(share, Response):
            return share
        if not self._opens(share, secret, presented):
            return _password_required(share)
        return Token(f"share:{share.id}", "analyst", share.site, share.created)

    async def _live(self, secret: str) -> Share | Response:
        """The share of ``secret`` while it opens, or the 404 / 410 / 503 to answer."""
        try:
            share = await _off_loop(self.shares.find, secret)
        except Exception as exc:  # the store is unreachable: the share may have been revoked
            log.warning("share lookup failed", extra={"error": type(exc).__name__})
            return Response.json(503, {"error": "shared links unavailable, retry later"}, [(b"retry-after", b"5")])
        if share is None:
            return Response.json(404, {"error": "no such shared link"})
        if not share.live(self.clock()):
            return Response.json(410, {"error": "this shared link was revoked or has expired"})
        return share

    def _opens(self, share: Share, secret: str, presented: str) -> bool:
        """Whether the header's value opens the share: its secret for a link without a
        password, a pass for one with."""
        if share.has_password:
            return pass_opens(share, presented, self.clock())
        return presented == secret

    def _client(self, request: Request) -> str:
        peer = (request.scope.get("client") or ("", 0))[0]
        return self.client_ip.resolve(peer, request.header(self.client_ip.header).decode("latin-1"))


REFUSALS = {404: "There is no such shared link.", 410: "This shared link was revoked or has expired."}


def _refusal_page(status: int) -> Response:
    """What a person who opens a refused link reads (the page's scripts would only say it later)."""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f'<title>Shared dashboard</title></head><body><main class="shared-refused"><h1>{REFUSALS[status]}</h1>'
        "</main></body></html>"
    )
    return Response(
        status, page.encode(), [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]
    )


def _password_required(share: Share) -> Response:
    if share.has_password:
        return Response.json(401, {"error": "this shared link asks for its password", "password_required": True})
    return Response.json(401, {"error": "send the shared link's id in X-Beacon-Share"})


def _query_flag(request: Request, name: str) -> bool:
    pairs = (pair.partition("=") for pair in request.scope["query_string"].decode("latin-1").split("&"))
    return any(key == name and value == "true" for key, _, value in pairs)


def _password_field(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    password = value.get("password") if isinstance(value, dict) else None
    return password if isinstance(password, str) and password else None


async def _off_loop(function: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
