"""Shared links: a read-only view of one site's aggregates at ``/share/<secret>``,
created, listed and revoked with ``beacon share`` (or by an admin in the dashboard).

The secret is ``sh_`` + 24 random bytes (URL-safe base64), shown once in the link.
The store keeps only its SHA-256 (``beacon.shares``), as for tokens, so a copy of the
store opens no share; its id, the first 12 hex digits of that hash, names it in
listings and revocations. A password, when the link has one, is kept as an argon2id
hash (argon2-cffi's defaults, RFC 9106's second recommended profile).

A share that asks for a password is opened with a *pass* (``pass_for``): the secret,
an expiry and an HMAC of both keyed by the password's hash. Any HTTP process of the
server can check it against the store, none keeps a session, and a revocation, an
expiry or a new password ends every pass at once. Forging one takes the secret,
which the store does not hold.

``ShareCache`` reads a share through a short cache, like ``storage.sessions``: a
revocation takes effect at once in the process that made it, within
``fresh_seconds`` in the others.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage.clickhouse import DATABASE, Store

PREFIX = "sh_"
ID_DIGITS = 12
_SECRET_CHARS = len(PREFIX) + 32  # 24 bytes in URL-safe base64
_PASSWORDS = PasswordHasher()  # argon2id


@dataclass(frozen=True)
class Share:
    id: str
    site: str
    password_hash: str  # '' when the link asks for no password
    embed_origins: tuple[str, ...]
    expires_at: int  # epoch seconds; 0 = never
    created: str  # UTC, 'YYYY-MM-DD HH:MM:SS'
    revoked: bool = False

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    def live(self, now: float) -> bool:
        """Whether the link still opens (neither revoked nor expired)."""
        return not self.revoked and (self.expires_at == 0 or now < self.expires_at)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(secret: str) -> bool:
    """Whether ``secret`` could be a share's: anything else is refused unread."""
    return len(secret) == _SECRET_CHARS and secret.startswith(PREFIX) and secret.isascii()


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def password_matches(share: Share, password: str) -> bool:
    """Whether ``password`` opens ``share`` (argon2id: tens of milliseconds, call it off the loop)."""
    try:
        return share.has_password and _PASSWORDS.verify(share.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def pass_for(share: Share, secret: str, until: int) -> str:
    """The pass that opens a password share until ``until`` (epoch seconds)."""
    return f"{secret}.{until}.{_pass_mac(share, secret, until)}"


def pass_opens(share: Share, presented: str, now: float) -> bool:
    """Whether ``presented`` (a pass from ``pass_for``) opens ``share`` now."""
    secret, _, rest = presented.partition(".")
    until, _, mac = rest.partition(".")
    if not until.isdigit() or int(until) <= now or not share.has_password:
        return False
    return hmac.compare_digest(mac, _pass_mac(share, secret, int(until)))


def _pass_mac(share: Share, secret: str, until: int) -> str:
    return hmac.new(share.password_hash.encode(), f"{secret}.{until}".encode(), hashlib.sha256).hexdigest()


def create_share(
    store: Store, site: str, password: str = "", expires_in_seconds: int = 0, embed_origins: tuple[str, ...] = ()
) -> tuple[str, Share]:
    """A new shared link of ``site``; returns its secret (not stored) and description."""
    secret = PREFIX + secrets.token_urlsafe(24)
    digest = hash_secret(secret)
    store.command(
        f"INSERT INTO {DATABASE}.shares (share_id, secret_hash, site, password_hash, embed_origins, expires_at) "
        "VALUES ({i:String}, {h:String}, {s:String}, {p:String}, {o:Array(String)}, "
        "if({e:UInt32} = 0, NULL, now() + toIntervalSecond({e:UInt32})))",
        {
            "i": digest[:ID_DIGITS],
            "h": digest,
            "s": site,
            "p": hash_password(password) if password else "",
            "o": list(embed_origins),
            "e": expires_in_seconds,
        },
    )
    return secret, next(s for s in list_shares(store) if s.id == digest[:ID_DIGITS])


def revoke_share(store: Store, share_id: str) -> bool:
    """Revoke for good; False when no active share has this id."""
    if not any(s.id == share_id and not s.revoked for s in list_shares(store)):
        return False
    store.command(
        f"INSERT INTO {DATABASE}.shares (share_id, secret_hash, site, password_hash, embed_origins, expires_at, "
        "created_at, revoked, revoked_at) "
        "SELECT share_id, secret_hash, site, password_hash, embed_origins, expires_at, created_at, 1, now64(3) "
        f"FROM {DATABASE}.shares FINAL WHERE share_id = {{i:String}}",
        {"i": share_id},
    )
    return True


# Numbers and text only: the same through the control socket (JSON) as from the engine.
_COLUMNS = (
    "share_id, site, password_hash, embed_origins, ifNull(toUnixTimestamp(expires_at), 0), "
    "formatDateTime(created_at, '%Y-%m-%d %H:%i:%S'), revoked"
)


def _share(row: tuple) -> Share:
    share_id, site, password_hash, origins, expires_at, created, revoked = row
    return Share(share_id, site, password_hash, tuple(origins), int(expires_at), created, bool(revoked))


def list_shares(store: Store) -> list[Share]:
    rows = store.rows(f"SELECT {_COLUMNS} FROM {DATABASE}.shares FINAL ORDER BY created_at, share_id")
    return [_share(row) for row in rows]


def read_share(store: Store, secret_hash: str) -> Share | None:
    """The share of ``secret_hash``; its ``embed_origins`` are its own and its site's
    (``set_site_embeds``): every page that may frame its embed."""
    rows = store.rows(
        f"SELECT {_COLUMNS} FROM {DATABASE}.shares FINAL WHERE secret_hash = {{h:String}}", {"h": secret_hash}
    )
    if not rows:
        return None
    share = _share(rows[0])
    own = share.embed_origins
    return replace(share, embed_origins=own + tuple(o for o in site_embeds(store, share.site) if o not in own))


def set_site_embeds(store: Store, site: str, origins: tuple[str, ...]) -> None:
    """The site's embed allowlist, replaced whole (empty: none)."""
    store.command(
        f"INSERT INTO {DATABASE}.site_embeds (site, origins) VALUES ({{s:String}}, {{o:Array(String)}})",
        {"s": site, "o": list(origins)},
    )


def site_embeds(store: Store, site: str) -> tuple[str, ...]:
    rows = store.rows(f"SELECT origins FROM {DATABASE}.site_embeds FINAL WHERE site = {{s:String}}", {"s": site})
    return tuple(rows[0][0]) if rows else ()


class ShareCache:
    """Shares by the hash of their secret, each answer (also "no such share") kept for
    ``fresh_seconds``. A revoked or expired share is returned as such (the page says
    so); a negative answer is safe to keep, as the link is shown only after its row is
    written."""

    MAX_ENTRIES = 4096

    def __init__(self, store: Store, fresh_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.fresh_seconds = fresh_seconds
        self.clock = clock
        self._answers: dict[str, tuple[float, Share | None]] = {}  # hash → (valid until, share)
        self._reading = threading.Lock()

    def find(self, secret: str) -> Share | None:
        """The share of ``secret``, or None. May read the store: call it off the event loop."""
        if not well_formed(secret):
            return None
        digest = hash_secret(secret)
        with self._reading:
            entry = self._answers.get(digest)
            if entry is not None and entry[0] > self.clock():
                return entry[1]
            found = read_share(self.store, digest)
            if len(self._answers) >= self.MAX_ENTRIES:
                self._answers.clear()  # made-up secrets cannot grow it without bound
            self._answers[digest] = (self.clock() + self.fresh_seconds, found)
            return found

    def forget_all(self) -> None:
        """Drop every answer (after this process revoked a share)."""
        self._answers.clear()
