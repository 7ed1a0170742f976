"""Bearer tokens: ``Authorization: Bearer bk_…``, checked against the active tokens
(``storage.tokens``). 401 when the token is missing, unknown or revoked; 403 when it
exists but its role or site limit does not allow the route; 503 while the token list
cannot be read from the store (a revocation might be missed)."""
from __future__ import annotations

from web.messages import Request, Response
from storage.tokens import Token, TokenDirectory

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
        return Response.json(403, {"error": f"this token's role ({token.role}) may not use this route; it needs {role}"})
    if every_site and not token.covers(None):
        return Response.json(403, {"error": "this token is limited to one site; this route needs a token for every site"})
    return None


def _unauthorized(message: str, detail: bytes) -> Response:
    return Response.json(401, {"error": message}, [(b"www-authenticate", _CHALLENGE + detail)])
