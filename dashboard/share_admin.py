"""Shared links managed from the dashboard, by the session of an admin (an admin token, or
an account with the admin role on some site), for the sites it administers:

    GET    /dashboard/shares       the links of the sites it administers (never their secrets)
    POST   /dashboard/shares       {"site", "password"?, "expires_days"?, "embed_origins"?} → 201, the secret once
    DELETE /dashboard/shares/ID    revoke: refused at once in this process, within a second in others

Changes come from the dashboard's own pages only (``same_origin``, as sign-in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from api.auth import session_cookie
from dashboard.security import Proxies, same_origin
from storage.clickhouse import Store
from storage.sessions import Principal, SessionCache
from storage.shares import Share, ShareCache, create_share, list_shares, revoke_share
from storage.sites import list_sites, normalise_origin
from storage.tokens import Token
from web.messages import Request, Response

log = logging.getLogger("beacon.dashboard")

PATH = "/dashboard/shares"
MAX_BODY_BYTES = 4096
MAX_EXPIRY_DAYS = 3650
MAX_EMBED_ORIGINS = 20


class ShareAdmin:
    def __init__(self, store: Store, sessions: SessionCache, shares: ShareCache, proxies: Proxies):
        self.store = store
        self.sessions = sessions
        self.shares = shares
        self.proxies = proxies

    async def answer(self, request: Request) -> Response:
        method, path = request.scope["method"], request.scope["path"]
        share_id = path[len(PATH) + 1 :] if path.startswith(PATH + "/") else None
        allowed = "DELETE" if share_id is not None else "GET, HEAD, POST"
        if method not in allowed.split(", "):
            return Response.json(405, {"error": "method not allowed"}, [(b"allow", allowed.encode())])
        if method not in ("GET", "HEAD") and not same_origin(request, self.proxies.scheme(request)):
            return Response.json(403, {"error": "shared links are managed from this dashboard's own pages only"})
        admin = await self.admin_of(request)
        if admin is None:
            return Response.json(403, {"error": "only an admin's session manages shared links"})
        if share_id is not None:
            return await self.revoke(admin, share_id)
        return await (self.create(request, admin) if method == "POST" else self.listed(admin))

    async def listed(self, admin: Principal) -> Response:
        shares = [s for s in await _off_loop(list_shares, self.store) if admin.administers(s.site)]
        return Response.json(200, {"shares": [_listed(s) for s in shares]}, [(b"cache-control", b"no-store")])

    async def create(self, request: Request, admin: Principal) -> Response:
        if request.media_type() != b"application/json":
            return Response.json(415, {"error": "send the shared link as application/json"})
        body = await request.body(MAX_BODY_BYTES)
        if body is None:
            return Response.json(413, {"error": "too large"})
        asked = _parse(body)
        if isinstance(asked, Response):
            return asked
        site, password, days, origins = asked
        if not admin.administers(site):
            return Response.json(403, {"error": "you are not an admin of this site", "field": "site"})
        if site not in {s.domain for s in await _off_loop(list_sites, self.store)}:
            return Response.json(404, {"error": f"'{site[:100]}' is not a registered site", "field": "site"})
        secret, share = await _off_loop(create_share, self.store, site, password, days * 86400, origins)
        log.info("shared link created", extra={"share": share.id, _actor(admin): admin.id})
        return Response.json(201, {"secret": secret, "share": _listed(share)}, [(b"cache-control", b"no-store")])

    async def revoke(self, admin: Principal, share_id: str) -> Response:
        known = next((s for s in await _off_loop(list_shares, self.store) if s.id == share_id), None)
        if (
            known is None
            or not admin.administers(known.site)
            or not await _off_loop(revoke_share, self.store, share_id)
        ):
            return Response.json(404, {"error": "no active shared link with this id"})
        self.shares.forget_all()
        log.info("shared link revoked", extra={"share": share_id, _actor(admin): admin.id})
        return Response(204, b"", [(b"cache-control", b"no-store")])

    async def admin_of(self, request: Request) -> Principal | None:
        """The token or account of the request's session when it is an admin's (read here,
        not through ``api.auth``, which makes every session an analyst's), else None."""
        secret = session_cookie(request)
        if secret is None:
            return None
        principal = await _off_loop(self.sessions.find, secret)
        return principal if principal is not None and principal.role == "admin" else None


def _actor(principal: Principal) -> str:
    # The log's field names who acted: a token's id or a user's id (never an e-mail address).
    return "token" if isinstance(principal, Token) else "user"


def _listed(share: Share) -> dict[str, Any]:
    return {
        "id": share.id,
        "site": share.site,
        "password": share.has_password,
        "embed_origins": list(share.embed_origins),
        "expires_at": share.expires_at or None,
        "created": share.created,
        "revoked": share.revoked,
    }


def _parse(body: bytes) -> tuple[str, str, int, tuple[str, ...]] | Response:
    """The site, password, days to expiry (0: never) and embed origins asked for."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("site"), str):
        return Response.json(400, {"error": 'send {"site": "…"}', "field": "site"})
    password, days, origins = (
        value.get("password") or "",
        value.get("expires_days") or 0,
        value.get("embed_origins") or [],
    )
    if not isinstance(password, str) or len(password) > 1024:
        return Response.json(400, {"error": "password must be text (at most 1024 characters)", "field": "password"})
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_EXPIRY_DAYS:
        return Response.json(400, {"error": f"expires_days: 0 (never) to {MAX_EXPIRY_DAYS}", "field": "expires_days"})
    if (
        not isinstance(origins, list)
        or len(origins) > MAX_EMBED_ORIGINS
        or not all(isinstance(o, str) for o in origins)
    ):
        return Response.json(400, {"error": "embed_origins: a list of origins", "field": "embed_origins"})
    try:
        return value["site"].strip().lower(), password, days, tuple(normalise_origin(o) for o in origins)
    except ValueError as exc:
        return Response.json(400, {"error": str(exc), "field": "embed_origins"})


async def _off_loop(function: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
