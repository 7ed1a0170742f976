"""API tokens: created, listed and revoked with ``beacon tokens``, checked by the
HTTP API (``api/``).

A token is ``bk_`` + 32 random bytes (URL-safe base64), shown once. The store keeps
only its SHA-256, so a copy of the store (or of a backup) lets nobody call the API.
Its id, the first 12 hex digits of that hash, names it in listings and audit rows;
whoever holds a token can find its id with ``printf %s TOKEN | sha256sum``.

A token has one role and may be limited to one site:

    privacy   the privacy API (export, erase, opt-out of a data subject)
    analyst   the query API (to come), for its site or every site
    admin     everything the other roles may do
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store
from storage.refresh import Refreshed

PREFIX = "bk_"
ROLES = ("privacy", "analyst", "admin")
ID_DIGITS = 12


@dataclass(frozen=True)
class Token:
    id: str
    role: str
    site: str  # '' = every site
    created: str  # UTC, 'YYYY-MM-DD HH:MM:SS'
    revoked: str = ""  # when it was revoked; '' while active

    def has_role(self, role: str) -> bool:
        return self.role == role or self.role == "admin"

    def covers(self, site: str | None) -> bool:
        """Whether the token may see ``site``'s data; None means every site's, which
        only a token without a site limit may."""
        return not self.site or self.site == site

    def administers(self, site: str) -> bool:
        """Whether the token may manage ``site`` (its shared links): an admin token that covers it."""
        return self.role == "admin" and self.covers(site)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, role: str, site: str = "") -> tuple[str, Token]:
    """A new token and its description; the token itself is not stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    secret = PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(secret)
    store.command(
        f"INSERT INTO {DATABASE}.api_tokens (token_id, token_hash, role, site) "
        "VALUES ({i:String}, {h:String}, {r:String}, {s:String})",
        {"i": digest[:ID_DIGITS], "h": digest, "r": role, "s": site},
    )
    return secret, find_token(store, digest[:ID_DIGITS])


def revoke_token(store: Store, token_id: str) -> bool:
    """Revoke for good; False when no active token has this id."""
    if not any(t.id == token_id and not t.revoked for t in list_tokens(store)):
        return False
    store.command(
        f"INSERT INTO {DATABASE}.api_tokens (token_id, token_hash, role, site, created_at, revoked, revoked_at) "
        f"SELECT token_id, token_hash, role, site, created_at, 1, now64(3) FROM {DATABASE}.api_tokens FINAL "
        "WHERE token_id = {i:String}",
        {"i": token_id},
    )
    return True


_TIME = "'%Y-%m-%d %H:%i:%S'"
# Times as text: the same through the control socket (JSON) as from the engine.
_COLUMNS = f"token_id, role, site, formatDateTime(created_at, {_TIME}), ifNull(formatDateTime(revoked_at, {_TIME}), '')"


def list_tokens(store: Store) -> list[Token]:
    return [
        Token(*row)
        for row in store.rows(f"SELECT {_COLUMNS} FROM {DATABASE}.api_tokens FINAL ORDER BY created_at, token_id")
    ]


def find_token(store: Store, token_id: str) -> Token:
    return next(t for t in list_tokens(store) if t.id == token_id)


def active_tokens(store: Store) -> dict[str, Token]:
    """Token hash → token, for every token not revoked."""
    rows = store.rows(f"SELECT token_hash, {_COLUMNS} FROM {DATABASE}.api_tokens FINAL WHERE revoked = 0")
    return {digest: Token(*rest) for digest, *rest in rows}


class TokenDirectory(Refreshed):
    """The active tokens of a running server, re-read every ``refresh_seconds`` (and
    after each CLI write in the embedded server), so a revocation takes effect within
    about a second."""

    name = "token-refresh"

    # After this long without a successful read, the list may miss revocations:
    # tokens are then refused (503) rather than trusted from memory.
    STALE_AFTER = 10.0

    def __init__(self, store: Store, refresh_seconds: float = 1.0):
        super().__init__(refresh_seconds, store.writes)
        self.store = store
        self._by_hash: dict[str, Token] = {}
        self._confirmed_at = float("-inf")

    def load(self) -> None:
        self._by_hash = active_tokens(self.store)
        self._confirmed_at = time.monotonic()

    def unchanged(self) -> None:
        self._confirmed_at = time.monotonic()

    @property
    def current(self) -> bool:
        """Whether the list was read from the store recently enough to be trusted."""
        return time.monotonic() - self._confirmed_at <= self.STALE_AFTER

    def find(self, presented: str) -> Token | None:
        """The active token presented by a caller. Looked up by hash, so the time it
        takes says nothing about how close a guess was."""
        return self._by_hash.get(hash_token(presented))
