"""Dashboard accounts: staff who sign in with an e-mail and a password (plus a TOTP
code when they turned two-factor on), or through single sign-on.

``beacon users invite`` makes a user with roles per site and a one-time invitation
link; the invitee sets a password there. ``beacon users reset`` clears the password,
the second factor and the sessions, and makes a new link; ``remove`` ends the account.

What the store keeps, so that a copy of it (or of a backup) signs nobody in:
passwords as argon2id hashes (argon2-cffi's defaults, RFC 9106's second profile),
invitation links and recovery codes as SHA-256 hashes (they are 32 and 10 random
characters: a fast hash is enough for secrets nobody chose). The TOTP secret is kept
as it is: the server must compute the codes.

Roles, per site ('' = every site):

    viewer    reads the dashboard of its sites
    analyst   as an analyst token: the dashboard and the figures of its sites
    admin     everything a role may do, on its sites

Every sign-in, failure, invitation, reset, removal and role change is written to
``beacon.auth_log`` (kept a year), with no password and no client address; so are the
time steps of the TOTP codes used, so that none is accepted twice.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage.clickhouse import DATABASE, Store

ROLES = ("viewer", "analyst", "admin")
INVITATION_PREFIX = "bi_"
INVITATION_SECONDS = 7 * 24 * 3600
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # argon2 would hash more, but nobody types it: a bound on the work asked of us
RECOVERY_CODES = 10
TOTP_ISSUER = "beacon"
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HASHER = PasswordHasher()  # argon2id
# Verified when the e-mail is unknown, so that a failure takes as long either way.
_DECOY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A request about accounts that cannot be done, said for the person asking."""


@dataclass(frozen=True)
class User:
    id: str
    email: str
    roles: dict[str, str] = field(default_factory=dict)  # site ('' = every site) → role
    has_password: bool = False
    totp_enabled: bool = False
    sso: bool = False
    created: str = ""

    @property
    def top_role(self) -> str:
        return max(self.roles.values(), key=ROLES.index, default="viewer")


@dataclass(frozen=True)
class Account:
    """What a user's dashboard session acts as: the interface of ``storage.tokens.Token``
    (``id``, ``role``, ``site``, ``has_role``, ``covers``, ``administers``), over the user's roles per site."""

    id: str
    role: str
    site: str  # '' when the user may read every site, else the first of its sites
    created: str
    email: str
    roles: tuple[tuple[str, str], ...]  # (site, role), site '' = every site
    second_factor: bool = False
    sso: bool = False

    def has_role(self, role: str) -> bool:
        # Every account reads statistics (the dashboard reads the Stats API): that is
        # the analyst route's permission. The other roles of a token are an admin's.
        return role == "analyst" or self.role == "admin"

    def covers(self, site: str | None) -> bool:
        sites = {s for s, _ in self.roles}
        return "" in sites or (site is not None and site in sites)

    def administers(self, site: str) -> bool:
        """Whether the user has the admin role on ``site`` (or on every site): an admin of one
        site manages that site's shared links, not another's."""
        return any(role == "admin" and scope in ("", site) for scope, role in self.roles)


def account_of(user: User) -> Account:
    sites = sorted(user.roles)
    site = "" if "" in user.roles or not sites else sites[0]
    roles = tuple(sorted(user.roles.items()))
    return Account(user.id, user.top_role, site, user.created, user.email, roles, user.totp_enabled, user.sso)


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise AccountError("not an e-mail address")
    return email


def check_roles(role: str, sites: tuple[str, ...]) -> dict[str, str]:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return {site: role for site in sites} if sites else {"": role}


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- audit log ------------------------------------------------------------------------


def record(store: Store, event: str, user_id: str, detail: str = "") -> None:
    """One line of the auth log. ``detail`` never holds a password or an address."""
    store.command(
        f"INSERT INTO {DATABASE}.auth_log (event, user_id, detail) VALUES ({{e:String}}, {{u:String}}, {{d:String}})",
        {"e": event, "u": user_id, "d": detail[:200]},
    )


def recent_failures(store: Store, user_id: str, seconds: int) -> int:
    """Failed sign-ins of ``user_id`` in the last ``seconds``: every HTTP process sees them."""
    return store.rows(
        f"SELECT count() FROM {DATABASE}.auth_log WHERE user_id = {{u:String}} AND event = 'sign_in_failed' "
        "AND at > now64(3) - toIntervalSecond({s:UInt32})",
        {"u": user_id, "s": seconds},
    )[0][0]


# --- users ----------------------------------------------------------------------------


def _user_rows(store: Store, where: str, params: dict) -> list[tuple]:
    return store.rows(
        f"SELECT user_id, email, password_hash, totp_secret, totp_enabled, sso, "
        f"formatDateTime(created_at, '%Y-%m-%d %H:%i:%S') FROM {DATABASE}.users FINAL "
        f"WHERE removed = 0 AND {where} ORDER BY created_at, user_id",
        params,
    )


def _roles(store: Store, user_ids: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {u: {} for u in user_ids}
    if not user_ids:
        return found
    for user_id, site, role in store.rows(
        f"SELECT user_id, site, role FROM {DATABASE}.user_roles FINAL WHERE revoked = 0 AND user_id IN {{u:Array(String)}}",
        {"u": user_ids},
    ):
        found[user_id][site] = role
    return found


def _users(store: Store, where: str, params: dict) -> list[tuple[User, str, str]]:
    """Users with their password hash and TOTP secret (neither leaves this module)."""
    rows = _user_rows(store, where, params)
    roles = _roles(store, [r[0] for r in rows])
    return [
        (User(uid, email, roles[uid], bool(pw), bool(totp_on), bool(sso), created), pw, totp)
        for uid, email, pw, totp, totp_on, sso, created in rows
    ]


def list_users(store: Store) -> list[User]:
    return [user for user, _, _ in _users(store, "1", {})]


def find_user(store: Store, email: str) -> User | None:
    found = _users(store, "email = {e:String}", {"e": normalise_email(email)})
    return found[0][0] if found else None


def user_by_id(store: Store, user_id: str) -> User | None:
    found = _users(store, "user_id = {u:String}", {"u": user_id})
    return found[0][0] if found else None


def _write_user(store: Store, user: User, password_hash: str, totp_secret: str, removed: bool = False) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.users (user_id, email, password_hash, totp_secret, totp_enabled, sso, removed, "
        "created_at) VALUES ({i:String}, {e:String}, {p:String}, {t:String}, {o:UInt8}, {s:UInt8}, {r:UInt8}, "
        "if({c:String} = '', now64(3), parseDateTime64BestEffort({c:String}, 3, 'UTC')))",
        {
            "i": user.id,
            "e": user.email,
            "p": password_hash,
            "t": totp_secret,
            "o": int(user.totp_enabled),
            "s": int(user.sso),
            "r": int(removed),
            "c": user.created,
        },
    )


def _secrets_of(store: Store, user_id: str) -> tuple[User, str, str]:
    found = _users(store, "user_id = {u:String}", {"u": user_id})
    if not found:
        raise AccountError("no such user")
    return found[0]


def set_roles(store: Store, user: User, roles: dict[str, str], actor: str) -> User:
    """Give ``user`` exactly ``roles``; each grant and withdrawal goes to the auth log."""
    for site, role in roles.items():
        if user.roles.get(site) != role:
            store.command(
                f"INSERT INTO {DATABASE}.user_roles (user_id, site, role) VALUES ({{u:String}}, {{s:String}}, {{r:String}})",
                {"u": user.id, "s": site, "r": role},
            )
            record(store, "role_granted", user.id, f"{role} on {site or 'every site'} by {actor}")
    for site, role in user.roles.items():
        if site not in roles:
            store.command(
                f"INSERT INTO {DATABASE}.user_roles (user_id, site, role, revoked) "
                "VALUES ({u:String}, {s:String}, {r:String}, 1)",
                {"u": user.id, "s": site, "r": role},
            )
            record(store, "role_revoked", user.id, f"{role} on {site or 'every site'} by {actor}")
    return User(user.id, user.email, dict(roles), user.has_password, user.totp_enabled, user.sso, user.created)


def invite(
    store: Store, email: str, roles: dict[str, str], lifetime_seconds: int = INVITATION_SECONDS
) -> tuple[str, User]:
    """A new user with ``roles`` and a one-time invitation; returns the link's secret."""
    email = normalise_email(email)
    if find_user(store, email) is not None:
        raise AccountError(f"{email} already has an account: beacon users reset gives a new link")
    user = User("u_" + secrets.token_hex(6), email, created="")
    _write_user(store, user, "", "")
    record(store, "invited", user.id)
    user = set_roles(store, user, roles, "cli")
    return _new_invitation(store, user.id, lifetime_seconds), user


def _new_invitation(store: Store, user_id: str, lifetime_seconds: int) -> str:
    secret = INVITATION_PREFIX + secrets.token_urlsafe(24)
    store.command(
        f"INSERT INTO {DATABASE}.invitations (invite_hash, user_id, expires_at) "
        "VALUES ({h:String}, {u:String}, now() + toIntervalSecond({s:UInt32}))",
        {"h": _sha256(secret), "u": user_id, "s": lifetime_seconds},
    )
    return secret


def reset(store: Store, email: str, lifetime_seconds: int = INVITATION_SECONDS) -> str:
    """A new one-time link for ``email``; the password, second factor, recovery codes,
    earlier links and every session of the user are gone."""
    user = find_user(store, email)
    if user is None:
        raise AccountError(f"no user {normalise_email(email)}")
    plain = User(user.id, user.email, user.roles, False, False, user.sso, user.created)
    _write_user(store, plain, "", "")
    _end_links_codes_sessions(store, user.id)
    record(store, "reset", user.id)
    return _new_invitation(store, user.id, lifetime_seconds)


def remove(store: Store, email: str) -> User:
    user = find_user(store, email)
    if user is None:
        raise AccountError(f"no user {normalise_email(email)}")
    set_roles(store, user, {}, "cli")
    _write_user(store, user, "", "", removed=True)
    _end_links_codes_sessions(store, user.id)
    record(store, "removed", user.id)
    return user


def _end_links_codes_sessions(store: Store, user_id: str) -> None:
    for table, key in (("invitations", "invite_hash, user_id, expires_at"), ("recovery_codes", "user_id, code_hash")):
        flag = "used"
        store.command(
            f"INSERT INTO {DATABASE}.{table} ({key}, {flag}) SELECT {key}, 1 FROM {DATABASE}.{table} FINAL "
            f"WHERE user_id = {{u:String}} AND {flag} = 0",
            {"u": user_id},
        )
    store.command(
        f"INSERT INTO {DATABASE}.user_sessions (session_hash, user_id, expires_at, revoked) "
        f"SELECT session_hash, user_id, expires_at, 1 FROM {DATABASE}.user_sessions FINAL "
        "WHERE user_id = {u:String} AND revoked = 0",
        {"u": user_id},
    )


# --- invitations and passwords ------------------------------------------------------------


def invited_user(store: Store, secret: str) -> User | None:
    """The user a live, unused invitation link is for; None for any other link."""
    if not secret.startswith(INVITATION_PREFIX) or len(secret) > 64:
        return None
    rows = store.rows(
        f"SELECT user_id FROM {DATABASE}.invitations FINAL "
        "WHERE invite_hash = {h:String} AND used = 0 AND expires_at > now()",
        {"h": _sha256(secret)},
    )
    return user_by_id(store, rows[0][0]) if rows else None


def check_password_rules(password: str, email: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if password.strip().lower() == email:
        raise AccountError("the password cannot be the e-mail address")


def accept_invitation(store: Store, secret: str, password: str) -> User:
    """Set the password of the invited user; the link is spent."""
    user = invited_user(store, secret)
    if user is None:
        raise AccountError("this invitation link is unknown, used or expired")
    check_password_rules(password, user.email)
    store.command(
        f"INSERT INTO {DATABASE}.invitations (invite_hash, user_id, expires_at, used) "
        f"SELECT invite_hash, user_id, expires_at, 1 FROM {DATABASE}.invitations FINAL WHERE invite_hash = {{h:String}}",
        {"h": _sha256(secret)},
    )
    user = User(user.id, user.email, user.roles, True, False, False, user.created)
    _write_user(store, user, _HASHER.hash(password), "")
    record(store, "invitation_accepted", user.id)
    return user


def check_password(store: Store, email: str, password: str) -> tuple[User | None, bool]:
    """The user of ``email`` (None when there is none) and whether ``password`` is theirs.
    Takes an argon2 verification's time whether or not the user exists."""
    try:
        email = normalise_email(email)
    except AccountError:
        email = ""
    found = _users(store, "email = {e:String}", {"e": email}) if email else []
    user, stored, _ = found[0] if found else (None, "", "")
    try:
        return user, _HASHER.verify(stored or _DECOY_HASH, password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return user, False


# --- two-factor -----------------------------------------------------------------------------


def begin_totp(store: Store, user_id: str) -> str:
    """A new TOTP secret for the user, not yet in force (``confirm_totp`` turns it on);
    returns its otpauth:// URI, for the QR code."""
    user, password_hash, _ = _secrets_of(store, user_id)
    if user.totp_enabled:
        raise AccountError("two-factor is already on: a reset turns it off")
    secret = pyotp.random_base32()
    _write_user(store, user, password_hash, secret)
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def pending_totp_uri(store: Store, user_id: str) -> str | None:
    user, _, secret = _secrets_of(store, user_id)
    if user.totp_enabled or not secret:
        return None
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def confirm_totp(store: Store, user_id: str, code: str) -> list[str]:
    """Turn two-factor on once ``code`` matches the pending secret; returns the recovery
    codes, shown once (the store keeps their hashes)."""
    user, password_hash, secret = _secrets_of(store, user_id)
    if user.totp_enabled or not secret:
        raise AccountError("start the two-factor setup first")
    step = _matching_step(store, user_id, secret, code.strip())
    if step is None:
        raise AccountError("that code does not match: check the device's clock and try the next one")
    record(store, "totp_used", user_id, str(step))
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODES)]
    for recovery in codes:
        store.command(
            f"INSERT INTO {DATABASE}.recovery_codes (user_id, code_hash) VALUES ({{u:String}}, {{h:String}})",
            {"u": user_id, "h": _sha256(recovery)},
        )
    enabled = User(user.id, user.email, user.roles, user.has_password, True, user.sso, user.created)
    _write_user(store, enabled, password_hash, secret)
    record(store, "totp_enabled", user_id)
    return codes


def _matching_step(store: Store, user_id: str, secret: str, code: str) -> int | None:
    """The time step (30 s) whose code ``code`` is, within one step of now, unless that
    step's code was used already: a code seen over a shoulder or in a log cannot be
    replayed (RFC 6238, 5.2). Used steps are read from the auth log (every process)."""
    totp = pyotp.TOTP(secret)
    now = totp.timecode(datetime.now(timezone.utc))
    step = next((s for s in (now - 1, now, now + 1) if hmac.compare_digest(totp.generate_otp(s), code)), None)
    if step is None:
        return None
    used = store.rows(
        f"SELECT count() FROM {DATABASE}.auth_log WHERE user_id = {{u:String}} AND event = 'totp_used' "
        "AND detail = {d:String} AND at > now64(3) - toIntervalSecond(300)",
        {"u": user_id, "d": str(step)},
    )[0][0]
    return None if used else step


def check_second_factor(store: Store, user_id: str, code: str) -> bool:
    """Whether ``code`` is the user's current TOTP code or one of their unused recovery
    codes (which is then spent)."""
    _, _, secret = _secrets_of(store, user_id)
    code = code.strip().replace(" ", "")
    if code.isdigit() and len(code) == 6:
        step = _matching_step(store, user_id, secret, code)
        if step is not None:
            record(store, "totp_used", user_id, str(step))
        return step is not None
    digest = _sha256(code.lower())
    unused = store.rows(
        f"SELECT count() FROM {DATABASE}.recovery_codes FINAL "
        "WHERE user_id = {u:String} AND code_hash = {h:String} AND used = 0",
        {"u": user_id, "h": digest},
    )[0][0]
    if not unused:
        return False
    store.command(
        f"INSERT INTO {DATABASE}.recovery_codes (user_id, code_hash, used) VALUES ({{u:String}}, {{h:String}}, 1)",
        {"u": user_id, "h": digest},
    )
    record(store, "recovery_code_used", user_id)
    return True


# --- single sign-on ---------------------------------------------------------------------------


def sso_user(store: Store, email: str, roles: dict[str, str]) -> User:
    """The account of someone the identity provider vouched for, with the roles its
    claims map to now (a change since their last sign-in is logged)."""
    user = find_user(store, email)
    if user is None:
        user = User("u_" + secrets.token_hex(6), normalise_email(email), sso=True)
        _write_user(store, user, "", "")
        record(store, "sso_account_created", user.id)
    return set_roles(store, user, roles, "sso")
