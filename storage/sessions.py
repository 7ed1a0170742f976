"""Dashboard sessions: a sign-in with an API token, or by a user (``storage.accounts``),
exchanged for a cookie.

The cookie holds ``bs_`` (a token's session) or ``bu_`` (a user's) + 32 random bytes
(URL-safe base64); the store keeps its SHA-256, the id of the token or user that
signed in, the expiry and a revoked flag (``beacon.dashboard_sessions``,
``beacon.user_sessions``), so that every HTTP process of ``beacon serve
--workers N`` (which share no memory) sees a session the moment another made it,
and a sign-out ends it everywhere. Why a table rather than signed cookies: a
signing key would have to be shared by those processes without living in the
store (a copy of the store must sign nobody in, as with tokens), and a revocation
list would be a table all the same.

``SessionCache`` reads a session through a short cache: a sign-out takes effect at
once in the process that served it, within ``fresh_seconds`` in the others, and so
does the revocation of the token behind the session, or the reset or removal of
the user.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

from storage.accounts import Account, account_of, user_by_id
from storage.clickhouse import DATABASE, Store
from storage.tokens import Token

PREFIX = "bs_"
USER_PREFIX = "bu_"
_SECRET_CHARS = len(PREFIX) + 43  # 32 bytes in URL-safe base64, unpadded

Principal = Token | Account  # what a session acts for


def hash_session(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(secret: str) -> bool:
    """Whether ``secret`` could be a session id: anything else is refused unread."""
    return len(secret) == _SECRET_CHARS and secret.startswith((PREFIX, USER_PREFIX)) and secret.isascii()


def create_session(store: Store, token_id: str, lifetime_seconds: int) -> str:
    """A new session for the token ``token_id``; returns the secret for the cookie."""
    secret = PREFIX + secrets.token_urlsafe(32)
    store.command(
        f"INSERT INTO {DATABASE}.dashboard_sessions (session_hash, token_id, expires_at) "
        "VALUES ({h:String}, {t:String}, now() + toIntervalSecond({s:UInt32}))",
        {"h": hash_session(secret), "t": token_id, "s": lifetime_seconds},
    )
    return secret


def create_user_session(store: Store, user_id: str, lifetime_seconds: int) -> str:
    """A new session for the user ``user_id``; returns the secret for the cookie."""
    secret = USER_PREFIX + secrets.token_urlsafe(32)
    store.command(
        f"INSERT INTO {DATABASE}.user_sessions (session_hash, user_id, expires_at) "
        "VALUES ({h:String}, {u:String}, now() + toIntervalSecond({s:UInt32}))",
        {"h": hash_session(secret), "u": user_id, "s": lifetime_seconds},
    )
    return secret


def revoke_session(store: Store, secret: str) -> None:
    """End the session for good (nothing happens for an unknown one)."""
    if secret.startswith(USER_PREFIX):
        store.command(
            f"INSERT INTO {DATABASE}.user_sessions (session_hash, user_id, expires_at, revoked) "
            f"SELECT session_hash, user_id, expires_at, 1 FROM {DATABASE}.user_sessions FINAL "
            "WHERE session_hash = {h:String} AND revoked = 0",
            {"h": hash_session(secret)},
        )
        return
    store.command(
        f"INSERT INTO {DATABASE}.dashboard_sessions (session_hash, token_id, expires_at, revoked) "
        f"SELECT session_hash, token_id, expires_at, 1 FROM {DATABASE}.dashboard_sessions FINAL "
        "WHERE session_hash = {h:String} AND revoked = 0",
        {"h": hash_session(secret)},
    )


_TIME = "'%Y-%m-%d %H:%i:%S'"


def read_session(store: Store, session_hash: str) -> tuple[Token, float] | None:
    """The active token of a live session, and the seconds the session has left; None
    when the session is unknown, expired or revoked, or its token was revoked."""
    rows = store.rows(
        f"SELECT t.token_id, t.role, t.site, formatDateTime(t.created_at, {_TIME}), "
        "toUInt32(greatest(0, dateDiff('second', now(), s.expires_at))) "
        f"FROM (SELECT token_id, expires_at FROM {DATABASE}.dashboard_sessions FINAL "
        "      WHERE session_hash = {h:String} AND revoked = 0 AND expires_at > now()) AS s "
        f"INNER JOIN (SELECT token_id, role, site, created_at FROM {DATABASE}.api_tokens FINAL "
        "      WHERE revoked = 0) AS t ON t.token_id = s.token_id",
        {"h": session_hash},
    )
    if not rows:
        return None
    token_id, role, site, created, seconds_left = rows[0]
    return Token(token_id, role, site, created), float(seconds_left)


def read_user_session(store: Store, session_hash: str) -> tuple[Account, float] | None:
    """The account of a live user session, and the seconds it has left; None when the
    session is unknown, expired or revoked, or the user was removed or has no role."""
    rows = store.rows(
        f"SELECT user_id, toUInt32(greatest(0, dateDiff('second', now(), expires_at))) "
        f"FROM {DATABASE}.user_sessions FINAL "
        "WHERE session_hash = {h:String} AND revoked = 0 AND expires_at > now()",
        {"h": session_hash},
    )
    user = user_by_id(store, rows[0][0]) if rows else None
    if user is None or not user.roles:
        return None
    return account_of(user), float(rows[0][1])


class SessionCache:
    """Sessions by the hash of their id, each answer (also "no such session") kept for
    ``fresh_seconds``, and never past the session's expiry.

    A negative answer can be cached safely: the cookie is handed out only after the
    session row is written, so no request can carry it before the row exists. Misses
    are read one at a time: a dashboard asks a dozen things at once with the same
    cookie, and one read answers them all."""

    MAX_ENTRIES = 4096

    def __init__(self, store: Store, fresh_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.fresh_seconds = fresh_seconds
        self.clock = clock
        self._answers: dict[str, tuple[float, Principal | None]] = {}  # hash → (valid until, token or account)
        self._reading = threading.Lock()

    def find(self, secret: str) -> Principal | None:
        """The token or account the session acts for, or None. May read the store: call it off the
        event loop. Raises when the store cannot be read."""
        if not well_formed(secret):
            return None
        digest = hash_session(secret)
        cached = self._cached(digest)
        if cached is not None:
            return cached[1]
        with self._reading:
            cached = self._cached(digest)
            if cached is not None:
                return cached[1]
            read = read_user_session if secret.startswith(USER_PREFIX) else read_session
            found = read(self.store, digest)
            now = self.clock()
            if found is None:
                self._remember(digest, now + self.fresh_seconds, None)
                return None
            token, seconds_left = found
            self._remember(digest, now + min(self.fresh_seconds, seconds_left), token)
            return token

    def forget(self, secret: str) -> None:
        """Drop what is known of a session (after this process ended it)."""
        self._answers.pop(hash_session(secret), None)

    def _cached(self, digest: str) -> tuple[float, Principal | None] | None:
        entry = self._answers.get(digest)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry

    def _remember(self, digest: str, until: float, token: Principal | None) -> None:
        if len(self._answers) >= self.MAX_ENTRIES:
            self._answers.clear()  # forged cookies cannot grow it without bound
        self._answers[digest] = (until, token)
