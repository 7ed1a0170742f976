"""The ASGI app mounted at /dashboard: the page, its assets and its session.

    GET    /dashboard               the page (it signs in, then reads /api/v1/stats/…)
    GET    /dashboard/assets/NAME   a built file (``dashboard.assets``)
    POST   /dashboard/session       sign in: {"email", "password", "code"?} (a user,
                                    ``dashboard.accounts``) or {"token": "bk_…"} → a session cookie
    GET    /dashboard/session       who is signed in, the sites they may see and their time zones
    DELETE /dashboard/session       sign out: the session ends in the store
    /dashboard/invitation, /dashboard/account/…   invitations and two-factor (``dashboard.accounts``)
    /dashboard/shares[/ID]          shared links, for an admin's session (``dashboard.share_admin``)
    GET    /dashboard/export/plausible  a site's Plausible CSV archive, for its admin (``dashboard.archive_export``)
    POST   /dashboard/import/plausible  an uploaded Plausible archive imported, by its admin (``dashboard.archive_import``)
    GET    /                        redirects to /dashboard (``routes()``, for the router)

A password or token is sent once, in a POST body, never in a URL; the page keeps no
copy. Each sign-in gives a new session id (no fixation). The cookie is HttpOnly, SameSite=Strict, Secure over HTTPS, and expires with the session
(``storage.sessions``), which the Stats API accepts for reads (``api.auth``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timezone
from functools import partial
from typing import Any

import orjson

from api.auth import SESSION_COOKIE, session_cookie, session_token
from collector.client_ip import ClientIPResolver
from common import metrics
from dashboard.accounts import AccountRoutes
from dashboard.archive_export import PATH as EXPORT
from dashboard.archive_export import ArchiveExport
from dashboard.archive_import import PATH as IMPORT
from dashboard.archive_import import ArchiveImport, ImportLimits
from dashboard.assets import Assets
from dashboard.limits import FailureWindow
from dashboard.oidc import OidcSignIn, clear_state_cookie
from dashboard.security import SECURITY_HEADERS, Proxies, same_origin
from dashboard.share_admin import PATH as SHARES
from dashboard.share_admin import ShareAdmin
from queries.metrics import METRICS
from queries.properties import CATALOGUE
from storage.accounts import Account, User, account_of
from storage.clickhouse import Store
from storage.funnels import list_funnels
from storage.goals import list_goals
from storage.imported import imported_spans
from storage.sessions import Principal, SessionCache, create_session, revoke_session
from storage.shares import ShareCache
from storage.sites import Site, list_sites
from storage.tokens import Token, TokenDirectory
from web.messages import Request, Response
from web.routing import Routes, failed

log = logging.getLogger("beacon.dashboard")

PREFIX = "/dashboard"
ASSETS = PREFIX + "/assets/"
SESSION = PREFIX + "/session"
INVITATION = PREFIX + "/invitation"
TOTP = PREFIX + "/account/totp"
TOTP_QR = TOTP + ".svg"
TOTP_CONFIRM = TOTP + "/confirm"
OIDC_START = PREFIX + "/oidc/start"
OIDC_CALLBACK = PREFIX + "/oidc/callback"
SESSION_SECONDS = 7 * 24 * 3600
MAX_SIGN_IN_BYTES = 4096


class DashboardApp:
    def __init__(
        self,
        store: Store,
        tokens: TokenDirectory,
        sessions: SessionCache,
        assets: Assets,
        proxies: Proxies = Proxies(),
        session_seconds: int = SESSION_SECONDS,
        client_ip: ClientIPResolver | None = None,
        failures_per_account: int = 5,
        failures_per_client: FailureWindow | None = None,
        oidc: OidcSignIn | None = None,
        shares: ShareCache | None = None,
        import_limits: ImportLimits | None = None,
    ):
        self.store = store
        self.tokens = tokens
        self.sessions = sessions
        self.assets = assets
        self.proxies = proxies
        self.session_seconds = session_seconds
        self.client_ip = client_ip or ClientIPResolver(proxies.cidrs)
        self.oidc = oidc
        self.accounts = AccountRoutes(
            store,
            failures_per_account,
            failures_per_client or FailureWindow(20, 900.0),
            session_seconds,
            self._cookie_for,
        )
        self.share_admin = ShareAdmin(store, sessions, shares or ShareCache(store), proxies)
        self.archive_export = ArchiveExport(store, self.share_admin.admin_of)
        limits = import_limits or ImportLimits(max_bytes=8 << 30, max_ratio=200, retention_days=730)
        self.archive_import = ArchiveImport(store, self.share_admin.admin_of, proxies, limits)
        self._session_routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "POST": self.sign_in,
            "GET": self.whoami,
            "DELETE": self.sign_out,
        }
        self._posts: dict[str, Callable[[Request], Awaitable[Response]]] = {
            INVITATION: self.invitation,
            TOTP: self.begin_totp,
            TOTP_CONFIRM: self.confirm_totp,
        }

    def routes(self) -> Routes:
        """The exact routes it adds to the router: ``/`` leads here."""

        async def home(request: Request) -> Response:
            return Response(302, b"", [(b"location", PREFIX.encode()), (b"cache-control", b"no-store")])

        return {("GET", "/"): home}

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._answer(request)
        except Exception as exc:
            response = failed(scope, exc)
        metrics.api_request(_route_name(scope["path"]), response.status)
        response.headers.extend(SECURITY_HEADERS)
        await response.send(send)

    async def _answer(self, request: Request) -> Response:
        method, path = request.scope["method"], request.scope["path"]
        if path in (PREFIX, PREFIX + "/"):
            return self.assets.page(request) if method in ("GET", "HEAD") else _not_allowed()
        if path.startswith(ASSETS):
            return self.assets.asset(request, path[len(ASSETS) :]) if method in ("GET", "HEAD") else _not_allowed()
        if path == SESSION:
            handler = self._session_routes.get(method)
            return await handler(request) if handler else _not_allowed(", ".join(sorted(self._session_routes)))
        if path in self._posts:
            return await self._posts[path](request) if method == "POST" else _not_allowed("POST")
        if path == TOTP_QR:
            return await self.totp_qr(request) if method in ("GET", "HEAD") else _not_allowed()
        if path in (OIDC_START, OIDC_CALLBACK) and self.oidc is not None:
            return await self._single_sign_on(request, path) if method == "GET" else _not_allowed("GET")
        if path == SHARES or path.startswith(SHARES + "/"):
            return await self.share_admin.answer(request)
        if path == EXPORT:
            return await self.archive_export.answer(request)
        if path == IMPORT:
            return await self.archive_import.answer(request)
        return Response.json(404, {"error": "not found"})

    # --- the session ------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        fields = await self._state_change(request)
        if isinstance(fields, Response):
            return fields
        if "email" in fields or "password" in fields:
            return await self.accounts.sign_in(fields, self._client(request), self.proxies.scheme(request) == "https")
        presented = _token_field(fields)
        if presented is None:
            return Response.json(400, {"error": 'send {"email": …, "password": …} or {"token": "…"}', "field": "email"})
        if not self.tokens.current:
            return Response.json(503, {"error": "token list unavailable, retry later"}, [(b"retry-after", b"5")])
        token = self.tokens.find(presented)
        if token is None:
            return Response.json(401, {"error": "unknown or revoked token"})
        if not token.has_role("analyst"):
            return Response.json(
                403, {"error": f"a {token.role} token cannot open the dashboard: use an analyst or admin token"}
            )
        secret = await _off_loop(create_session, self.store, token.id, self.session_seconds)
        log.info("dashboard sign-in", extra={"token": token.id})
        cookie = _cookie(secret, self.session_seconds, self.proxies.scheme(request) == "https")
        return await self._describe(token, [(b"set-cookie", cookie)], _as_admin(token))

    async def _state_change(self, request: Request) -> dict[str, Any] | Response:
        """The JSON object of a POST from this dashboard's own pages, or the refusal."""
        if not same_origin(request, self.proxies.scheme(request)):
            return Response.json(403, {"error": "this is accepted from this dashboard's own pages only"})
        if request.media_type() != b"application/json":
            return Response.json(415, {"error": "send a JSON object as application/json"})
        body = await request.body(MAX_SIGN_IN_BYTES)
        if body is None:
            return Response.json(413, {"error": "too large"})
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            return Response.json(400, {"error": "send a JSON object"})
        return fields

    def _client(self, request: Request) -> str:
        peer = (request.scope.get("client") or ("", 0))[0]
        return self.client_ip.resolve(peer, request.header(self.client_ip.header).decode("latin-1"))

    async def _cookie_for(self, user: User, secret: str, https: bool) -> Response:
        account = account_of(user)
        cookie = _cookie(secret, self.session_seconds, https)
        return await self._describe(account, [(b"set-cookie", cookie)], _as_admin(account))

    # --- invitations and two-factor (dashboard.accounts) ---------------------------------

    async def invitation(self, request: Request) -> Response:
        fields = await self._state_change(request)
        if isinstance(fields, Response):
            return fields
        https = self.proxies.scheme(request) == "https"
        return await self.accounts.invitation(fields, self._client(request), https)

    async def begin_totp(self, request: Request) -> Response:
        fields = await self._state_change(request)
        account = fields if isinstance(fields, Response) else await self._signed_in_user(request)
        return account if isinstance(account, Response) else await self.accounts.begin_totp(account.id)

    async def totp_qr(self, request: Request) -> Response:
        account = await self._signed_in_user(request)
        return account if isinstance(account, Response) else await self.accounts.totp_qr(account.id)

    async def confirm_totp(self, request: Request) -> Response:
        fields = await self._state_change(request)
        if isinstance(fields, Response):
            return fields
        account = await self._signed_in_user(request)
        return account if isinstance(account, Response) else await self.accounts.confirm_totp(account.id, fields)

    # --- single sign-on (dashboard.oidc) ------------------------------------------------

    async def _single_sign_on(self, request: Request, path: str) -> Response:
        https = self.proxies.scheme(request) == "https"
        if path == OIDC_START:
            return await self.oidc.start(request, https)
        user, refusal = await self.oidc.callback(request, https)
        if refusal is not None:
            return refusal
        secret = await self.oidc.session_for(user)
        log.info("dashboard sign-in", extra={"user": user.id, "through": "oidc"})
        cookies = [
            (b"set-cookie", _cookie(secret, self.session_seconds, https)),
            (b"set-cookie", clear_state_cookie(https)),
        ]
        return Response(302, b"", [(b"location", PREFIX.encode()), (b"cache-control", b"no-store")] + cookies)

    async def _signed_in_user(self, request: Request) -> Account | Response:
        principal = await self._signed_in(request)
        if isinstance(principal, Token):
            return Response.json(403, {"error": "a token's session has no account: sign in with an e-mail address"})
        return principal

    async def whoami(self, request: Request) -> Response:
        token = await self._signed_in(request)
        if isinstance(token, Response):
            return token
        return await self._describe(token, [], await self.share_admin.admin_of(request))

    async def sign_out(self, request: Request) -> Response:
        scheme = self.proxies.scheme(request)
        if not same_origin(request, scheme):
            return Response.json(403, {"error": "sign-out is accepted from this dashboard's own pages only"})
        secret = session_cookie(request)
        if secret is not None:
            await _off_loop(revoke_session, self.store, secret)
            self.sessions.forget(secret)
        return Response(204, b"", [(b"set-cookie", _cookie("", 0, scheme == "https")), (b"cache-control", b"no-store")])

    async def _signed_in(self, request: Request) -> Principal | Response:
        secret = session_cookie(request)
        found = await session_token(secret, self.sessions) if secret is not None else None
        if found is None or (isinstance(found, Response) and found.status == 401):
            # Whether to offer single sign-on: the sign-in page asks this way.
            return Response.json(401, {"error": "not signed in", "sso": self.oidc is not None})
        return found

    async def _describe(
        self, principal: Principal, headers: list[tuple[bytes, bytes]], admin: Principal | None
    ) -> Response:
        """Who the session acts for (a user, or a token: never the token itself), whether
        it may manage shared links (``admin``: the session's principal when it is an admin's,
        as reads through a session are an analyst's) and of which sites (those it
        administers), and what ``describe_sites`` tells of the sites it may read."""
        readable = [s for s in await _off_loop(list_sites, self.store) if principal.covers(s.domain)]
        body = {
            **_who(principal),
            "sso": self.oidc is not None,
            "can_share": admin is not None,
            "share_sites": [s.domain for s in readable if admin is not None and admin.administers(s.domain)],
        } | await _off_loop(describe_sites, self.store, readable)
        return Response.json(200, body, headers + [(b"cache-control", b"no-store")])

    def describe_shared(self, domain: str) -> dict[str, Any]:
        """What the page of a shared link of ``domain`` needs (dashboard.share)."""
        return describe_sites(self.store, [s for s in list_sites(self.store) if s.domain == domain])


def describe_sites(store: Store, readable: list[Site]) -> dict[str, Any]:
    """The sites, their time zones, their goals' names (the page tells "no goal yet"
    from "none reached"), the currencies of their revenue goals (the page adds revenue
    columns under such a goal), their funnels' names (the funnel panel's choices) and the
    days imported from another product's archive (the page offers to include them)."""
    sites = [s.domain for s in readable]
    goals: dict[str, list[str]] = {site: [] for site in sites}
    currencies: dict[str, dict[str, str]] = {site: {} for site in sites}
    for goal in list_goals(store):
        if goal.site in goals:
            goals[goal.site].append(goal.display_name)
            if goal.currency:
                currencies[goal.site][goal.display_name] = goal.currency
    funnels: dict[str, list[str]] = {site: [] for site in sites}
    for funnel in list_funnels(store):
        if funnel.site in funnels:
            funnels[funnel.site].append(funnel.name)
    imported = {site: [str(first), str(last)] for site, (first, last) in imported_spans(store).items() if site in goals}
    return {
        "sites": sites,
        "zones": {s.domain: _zone_of(s) for s in readable},
        "goals": goals,
        "funnels": funnels,
        "currencies": currencies,
        "imported": imported,
        "properties": PROPERTIES,
        "metrics": METRIC_REGISTRY,
    }


# The properties the Stats API breaks down by, as the read side declares them
# (queries.properties): the panels' column headings and their rows' keys.
PROPERTIES = {p.name: {"label": p.label, "key": p.key} for p in CATALOGUE.values()}
# The metrics, as the read side declares them (queries.metrics): the name and unit of
# a metric the page has no wording of its own for (metrics.js).
METRIC_REGISTRY = {m.name: {"label": m.label, "unit": m.unit, "short": m.short or m.label} for m in METRICS.values()}


def _who(principal: Principal) -> dict[str, Any]:
    if isinstance(principal, Account):
        roles = [{"site": site or None, "role": role} for site, role in principal.roles]
        user = {
            "email": principal.email,
            "roles": roles,
            "second_factor": principal.second_factor,
            "sso": principal.sso,
        }
        return {"token": None, "user": user}
    return {"token": {"id": principal.id, "role": principal.role, "site": principal.site or None}}


def _zone_of(site: Site) -> dict[str, str]:
    """The zone that cuts the site's days; after a change of zone, the instant from
    which its figures are in it and that instant's local date (the page says that the
    figures of earlier days keep the previous zone's cut)."""
    zone = {"timezone": site.timezone}
    if site.zone_since is not None:
        since = site.zone_since.astimezone(timezone.utc)
        zone["zone_since"] = since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        zone["timezone_from"] = since.astimezone(site.zone).date().isoformat()
    return zone


def _token_field(fields: dict[str, Any]) -> str | None:
    token = fields.get("token")
    return token.strip() if isinstance(token, str) and token.strip() else None


def _cookie(secret: str, max_age: int, secure: bool) -> bytes:
    # Path=/ : the Stats API under /api/v1/stats/ reads it too.
    parts = [f"{SESSION_COOKIE}={secret}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


def _as_admin(principal: Principal) -> Principal | None:
    return principal if principal.role == "admin" else None


def _not_allowed(allowed: str = "GET, HEAD") -> Response:
    return Response.json(405, {"error": "method not allowed"}, [(b"allow", allowed.encode())])


def _route_name(path: str) -> str:
    """The label of beacon_api_requests_total: a fixed word, never the path."""
    if path in (PREFIX, PREFIX + "/"):
        return "dashboard_page"
    if path.startswith(ASSETS):
        return "dashboard_asset"
    if path == SESSION:
        return "dashboard_session"
    if path in (INVITATION, TOTP, TOTP_QR, TOTP_CONFIRM):
        return "dashboard_account"
    if path == SHARES or path.startswith(SHARES + "/"):
        return "dashboard_shares"
    return "dashboard_oidc" if path in (OIDC_START, OIDC_CALLBACK) else "unknown"


async def _off_loop(function: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args))
