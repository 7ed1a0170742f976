"""The dashboard's routes for users (``storage.accounts``):

    POST /dashboard/session            {"email", "password", "code"?} → a user's session
                                       (``DashboardApp.sign_in`` hands the request here)
    POST /dashboard/invitation         {"invitation"} → the e-mail it is for;
                                       {"invitation", "password"} → password set, signed in
    POST /dashboard/account/totp       start two-factor: a new secret, its otpauth URI
    GET  /dashboard/account/totp.svg   that URI as a QR code (SVG)
    POST /dashboard/account/totp/confirm  {"code"} → two-factor on, the recovery codes

Failed sign-ins are limited per account (in the store's auth log, so every process
counts them) and per client address (in memory); past either limit the answer is 429
with Retry-After, and the password is not even checked. A password is read from the
body, hashed or verified, and dropped: it is never logged nor stored.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import segno

from dashboard.limits import FailureWindow
from storage import accounts
from storage.accounts import AccountError, User
from storage.clickhouse import Store
from storage.sessions import create_user_session
from web.messages import Response

log = logging.getLogger("beacon.dashboard")

WRONG = "the e-mail address or password is wrong"


class AccountRoutes:
    def __init__(
        self,
        store: Store,
        per_account: int,
        per_client: FailureWindow,
        session_seconds: int,
        signed_in: Callable[[User, str, bool], Awaitable[Response]],
    ):
        self.store = store
        self.per_account = per_account
        self.per_client = per_client
        self.session_seconds = session_seconds
        self.signed_in = signed_in  # (user, cookie secret, over https) → the answer that sets the cookie

    # --- sign-in ------------------------------------------------------------------------

    async def sign_in(self, fields: dict[str, Any], client: str, https: bool) -> Response:
        email, password, code = (_text(fields, name) for name in ("email", "password", "code"))
        if not email or not password:
            return Response.json(400, {"error": "send the e-mail address and the password", "field": "password"})
        wait = self.per_client.blocked(client)
        if wait:
            return _too_many(wait)
        locked = await _off_loop(self._locked, email)
        if locked is not None:
            await _off_loop(accounts.record, self.store, "sign_in_refused", locked, "too many failures")
            return _too_many(int(self.per_client.window))
        user, right = await _off_loop(accounts.check_password, self.store, email, password)
        if not right:
            return await self._failed(user, client, "wrong password" if user else "unknown account")
        if user.totp_enabled:
            if not code:
                return Response.json(401, {"error": "enter the code of your authenticator app", "second_factor": True})
            if not await _off_loop(accounts.check_second_factor, self.store, user.id, code):
                return await self._failed(user, client, "wrong second factor")
        return await self._session_for(user, https)

    def _locked(self, email: str) -> str | None:
        """The id of the account of ``email`` when it has had too many failures (blocking)."""
        try:
            user = accounts.find_user(self.store, email)
        except AccountError:
            return None
        if user is None:
            return None
        failures = accounts.recent_failures(self.store, user.id, int(self.per_client.window))
        return user.id if failures >= self.per_account else None

    async def _failed(self, user: User | None, client: str, why: str) -> Response:
        self.per_client.failed(client)
        await _off_loop(accounts.record, self.store, "sign_in_failed", user.id if user else "", why)
        log.info("dashboard sign-in failed", extra={"reason": why})
        return Response.json(401, {"error": WRONG if "second" not in why else "that code is wrong"})

    async def _session_for(self, user: User, https: bool) -> Response:
        if not user.roles:
            return Response.json(403, {"error": "this account has no role on any site: ask an admin"})
        secret = await _off_loop(create_user_session, self.store, user.id, self.session_seconds)
        await _off_loop(accounts.record, self.store, "sign_in", user.id)
        log.info("dashboard sign-in", extra={"user": user.id})
        return await self.signed_in(user, secret, https)

    # --- invitations --------------------------------------------------------------------

    async def invitation(self, fields: dict[str, Any], client: str, https: bool) -> Response:
        secret, password = _text(fields, "invitation"), _text(fields, "password")
        wait = self.per_client.blocked(client)
        if wait:
            return _too_many(wait)
        user = await _off_loop(accounts.invited_user, self.store, secret) if secret else None
        if user is None:
            self.per_client.failed(client)
            return Response.json(404, {"error": "this invitation link is unknown, used or expired: ask for a new one"})
        if not password:
            return Response.json(200, {"email": user.email}, [(b"cache-control", b"no-store")])
        try:
            user = await _off_loop(accounts.accept_invitation, self.store, secret, password)
        except AccountError as exc:
            return Response.json(400, {"error": str(exc), "field": "password"})
        return await self._session_for(user, https)

    # --- two-factor ---------------------------------------------------------------------

    async def begin_totp(self, user_id: str) -> Response:
        try:
            uri = await _off_loop(accounts.begin_totp, self.store, user_id)
        except AccountError as exc:
            return Response.json(409, {"error": str(exc)})
        return Response.json(200, {"uri": uri}, [(b"cache-control", b"no-store")])

    async def totp_qr(self, user_id: str) -> Response:
        uri = await _off_loop(accounts.pending_totp_uri, self.store, user_id)
        if uri is None:
            return Response.json(404, {"error": "no two-factor setup in progress"})
        out = io.BytesIO()
        segno.make(uri, error="m").save(out, kind="svg", scale=4, border=4, xmldecl=False, title="")
        return Response(200, out.getvalue(), [(b"content-type", b"image/svg+xml"), (b"cache-control", b"no-store")])

    async def confirm_totp(self, user_id: str, fields: dict[str, Any]) -> Response:
        try:
            codes = await _off_loop(accounts.confirm_totp, self.store, user_id, _text(fields, "code"))
        except AccountError as exc:
            return Response.json(400, {"error": str(exc), "field": "code"})
        return Response.json(200, {"recovery_codes": codes}, [(b"cache-control", b"no-store")])


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _too_many(seconds: int) -> Response:
    return Response.json(
        429, {"error": "too many failed sign-ins: try again later"}, [(b"retry-after", str(seconds).encode())]
    )


async def _off_loop(function: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
