"""Bearer tokens: ``Authorization: Bearer bk_…``, checked against the active tokens
(``storage.tokens``). 401 when the token is missing, unknown or revoked; 403 when it
exists but its role or site limit does not allow the route; 503 while the token list
cannot be read from the store (a revocation might be missed).

The dashboard's session cookie (``storage.sessions``) stands for a token or a user
account (``storage.accounts.Account``, limited to the sites of its roles) too, on
reads only (GET, HEAD) and with the analyst role at most: a session reads
statistics; exporting or erasing a data subject takes the token itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from storage.sessions import Principal, SessionCache
from storage.tokens import Token, TokenDirectory
from web.messages import Request, Response

log = logging.getLogger("beacon.api")

SESSION_COOKIE = "beacon_session"
_READS = ("GET", "HEAD")

_CHALLENGE = b'Bearer realm="beacon"'


def presented_token(request: Request) -> str | None:
    scheme, _, value = request.header(b"authorization").decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request: Request, tokens: TokenDirectory) -> Token | Response:
    """The caller's active token, or the 401 to answer."""
    presented = presented_token(request)
    if presented is None:
        return _unauthorized("an API token is required: Authorization: Bearer <token>", b"")
    if not tokens.current:  # the store is unreachable: a revoked token could still be listed
        return Response.json(503, {"error": "token list unavailable, retry later"}, [(b"retry-after", b"5")])
    token = tokens.find(presented)
    if token is None:
        return _unauthorized("unknown or revoked token", b', error="invalid_token"')
    return token


def forbidden(token: Token, role: str, every_site: bool) -> Response | None:
    """The 403 to answer when ``token`` may not act as ``role`` (on every site's data
    when ``every_site``), else None."""
    if not token.has_role(role):
        return Response.json(
            403, {"error": f"this token's role ({token.role}) may not use this route; it needs {role}"}
        )
    if every_site and not token.covers(None):
        return Response.json(
            403, {"error": "this token is limited to one site; this route needs a token for every site"}
        )
    return None


def _unauthorized(message: str, detail: bytes) -> Response:
    return Response.json(401, {"error": message}, [(b"www-authenticate", _CHALLENGE + detail)])


async def authenticate_caller(
    request: Request, tokens: TokenDirectory, sessions: SessionCache | None
) -> Principal | Response:
    """The caller's token from ``Authorization: Bearer`` (as ``authenticate``), or on a
    read without that header, from the dashboard's session cookie; else the 401."""
    secret = session_cookie(request) if sessions is not None else None
    if secret is None or request.header(b"authorization") or request.scope["method"] not in _READS:
        return authenticate(request, tokens)
    return await session_token(secret, sessions)


async def session_token(secret: str, sessions: SessionCache) -> Principal | Response:
    """The token or user account a session acts for, as an analyst at most; or the 401 or 503."""
    try:
        token = await asyncio.get_running_loop().run_in_executor(None, sessions.find, secret)
    except Exception as exc:  # the store is unreachable: the session may have ended
        log.warning("session lookup failed", extra={"error": type(exc).__name__})
        return Response.json(503, {"error": "sessions unavailable, retry later"}, [(b"retry-after", b"5")])
    if token is None:
        return _unauthorized("the dashboard session has ended: sign in again", b', error="invalid_token"')
    return replace(token, role="analyst") if token.role == "admin" else token


def session_cookie(request: Request) -> str | None:
    """The value of the session cookie, when the request carries one."""
    for pair in request.header(b"cookie").decode("latin-1").split(";"):
        name, _, value = pair.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None
