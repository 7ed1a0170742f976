"""Single sign-on with OpenID Connect (authorization code flow, PKCE S256, nonce), with
Authlib's client for the provider's endpoints (its requests integration, called off the
event loop) and joserfc (Authlib's JOSE library) for the ID token:

    GET /dashboard/oidc/start     → the provider's authorization endpoint, with a fresh
                                    state, nonce and PKCE verifier kept in a short-lived
                                    HttpOnly cookie (SameSite=Lax: the provider's redirect
                                    back is a cross-site navigation, which Strict would strip)
    GET /dashboard/oidc/callback  ← the provider: the state must equal the cookie's; the
                                    code is exchanged with the verifier; the ID token's
                                    signature (the provider's JWKS), issuer, audience,
                                    expiry and nonce are checked

Who may sign in: a verified e-mail address (``email_verified`` not false) of an allowed
domain (``--oidc-allowed-domain``; none listed: any), whose groups (``--oidc-groups-claim``)
map to roles (``--oidc-role GROUP=ROLE[@SITE]``; none listed: ``--oidc-default-role`` on
every site). Anyone else is sent back to the sign-in page with ``#sso=refused``, and the
refusal goes to the auth log. The roles are set anew at every sign-in, so a change of
groups at the provider takes effect at the next one (and is logged).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from common.settings import Settings
from storage import accounts
from storage.accounts import ROLES, User
from storage.clickhouse import Store
from storage.sessions import create_user_session
from web.messages import Request, Response

log = logging.getLogger("beacon.dashboard")

STATE_COOKIE = "beacon_oidc"
STATE_SECONDS = 600
CALLBACK = "/dashboard/oidc/callback"
_DISCOVERY_SECONDS = 3600
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    allowed_domains: frozenset[str]
    groups_claim: str
    roles: dict[str, tuple[str, str]]  # group → (role, site)
    default_role: str

    @classmethod
    def of(cls, settings: Settings) -> OidcConfig | None:
        if not settings.oidc_issuer:
            return None
        return cls(
            settings.oidc_issuer.rstrip("/"),
            settings.oidc_client_id,
            settings.oidc_client_secret,
            settings.link_base + CALLBACK,
            frozenset(d.strip().lower().lstrip("@") for d in settings.oidc_allowed_domain),
            settings.oidc_groups_claim,
            settings.oidc_roles(),
            settings.oidc_default_role,
        )

    def roles_for(self, claims: dict[str, Any]) -> dict[str, str] | None:
        """The roles (site → role) the claims give, or None when they give none."""
        if not self.roles:
            return {"": self.default_role}
        groups = claims.get(self.groups_claim)
        groups = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
        granted: dict[str, str] = {}
        for group in groups:
            if isinstance(group, str) and group in self.roles:
                role, site = self.roles[group]
                if ROLES.index(role) >= ROLES.index(granted.get(site, role)):
                    granted[site] = role
        return granted or None

    def refusal(self, claims: dict[str, Any]) -> str | None:
        """Why the claims may not sign in, or None."""
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            return "no e-mail address"
        if claims.get("email_verified") is False:
            return "e-mail address not verified"
        if self.allowed_domains and email.rsplit("@", 1)[1].lower() not in self.allowed_domains:
            return "domain not allowed"
        return None if self.roles_for(claims) else "no allowed group"


class OidcSignIn:
    def __init__(self, store: Store, config: OidcConfig, session_seconds: int):
        self.store = store
        self.config = config
        self.session_seconds = session_seconds
        self._metadata: dict[str, Any] = {}
        self._metadata_at = float("-inf")
        self._keys: KeySet | None = None

    def _client(self) -> OAuth2Session:
        c = self.config
        return OAuth2Session(
            c.client_id,
            c.client_secret,
            scope="openid email profile",
            redirect_uri=c.redirect_uri,
            code_challenge_method="S256",
        )

    async def start(self, request: Request, https: bool) -> Response:
        try:
            metadata = await _off_loop(self._discovered)
        except (requests.RequestException, ValueError) as exc:
            log.warning("OIDC discovery failed", extra={"error": type(exc).__name__})
            return Response.json(502, {"error": "the identity provider cannot be reached, retry later"})
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        cookie = _state_cookie(f"{state}.{nonce}.{verifier}", STATE_SECONDS, https)
        return Response(
            302, b"", [(b"location", url.encode()), (b"set-cookie", cookie), (b"cache-control", b"no-store")]
        )

    async def callback(self, request: Request, https: bool) -> tuple[User | None, Response | None]:
        """The user the provider vouched for, or the answer that refuses the sign-in."""
        query = dict(parse_qsl(request.scope["query_string"].decode("latin-1")))
        kept = _cookie_value(request, STATE_COOKIE).split(".")
        if len(kept) != 3 or not query.get("state") or not secrets.compare_digest(query["state"], kept[0]):
            return None, _back("failed", https)  # a forged or replayed redirect: no state of ours
        if "code" not in query:
            return None, _back("failed", https)  # the user declined, or the provider failed
        try:
            claims = await _off_loop(self._claims, query["code"], kept[1], kept[2])
        except (requests.RequestException, JoseError, ValueError, KeyError) as exc:
            log.warning("OIDC sign-in failed", extra={"error": type(exc).__name__})
            return None, _back("failed", https)
        why = self.config.refusal(claims)
        if why is not None:
            await _off_loop(accounts.record, self.store, "sso_refused", "", why)
            return None, _back("refused", https)
        roles = self.config.roles_for(claims) or {}
        return await _off_loop(accounts.sso_user, self.store, claims["email"], roles), None

    async def session_for(self, user: User) -> str:
        secret = await _off_loop(create_user_session, self.store, user.id, self.session_seconds)
        await _off_loop(accounts.record, self.store, "sign_in", user.id, "sso")
        return secret

    def _claims(self, code: str, nonce: str, verifier: str) -> dict[str, Any]:
        """The checked claims of the ID token the code is exchanged for (blocking)."""
        metadata = self._discovered()
        with self._client() as client:
            token = client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
                timeout=10,
            )
        try:
            decoded = jwt.decode(token["id_token"], self._key_set(refresh=False), algorithms=_ALGORITHMS)
        except JoseError:  # signed with a key published since we read the provider's keys
            decoded = jwt.decode(token["id_token"], self._key_set(refresh=True), algorithms=_ALGORITHMS)
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": self.config.client_id},
            nonce={"essential": True, "value": nonce},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(decoded.claims)
        return decoded.claims

    def _discovered(self) -> dict[str, Any]:
        if time.monotonic() - self._metadata_at > _DISCOVERY_SECONDS:
            found = requests.get(f"{self.config.issuer}/.well-known/openid-configuration", timeout=10)
            found.raise_for_status()
            metadata = found.json()
            if not isinstance(metadata, dict) or "authorization_endpoint" not in metadata:
                raise ValueError("not an OpenID Provider configuration")
            if str(metadata.get("issuer", "")).rstrip("/") != self.config.issuer:
                raise ValueError("the provider names another issuer")  # OpenID Connect Discovery 4.3
            self._metadata, self._metadata_at, self._keys = metadata, time.monotonic(), None
        return self._metadata

    def _key_set(self, refresh: bool) -> KeySet:
        if self._keys is None or refresh:
            found = requests.get(self._metadata["jwks_uri"], timeout=10)
            found.raise_for_status()
            self._keys = KeySet.import_key_set(found.json())
        return self._keys


def _back(outcome: str, https: bool) -> Response:
    """To the sign-in page, which says what happened; the state cookie goes."""
    headers = [(b"location", f"/dashboard/#sso={outcome}".encode()), (b"cache-control", b"no-store")]
    return Response(302, b"", headers + [(b"set-cookie", _state_cookie("", 0, https))])


def _state_cookie(value: str, max_age: int, secure: bool) -> bytes:
    parts = [f"{STATE_COOKIE}={value}", "Path=/dashboard/oidc", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


def clear_state_cookie(secure: bool) -> bytes:
    return _state_cookie("", 0, secure)


def _cookie_value(request: Request, name: str) -> str:
    for pair in request.header(b"cookie").decode("latin-1").split(";"):
        key, _, value = pair.strip().partition("=")
        if key == name:
            return value
    return ""


async def _off_loop(function, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
