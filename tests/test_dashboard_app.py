"""The dashboard's app (dashboard/app.py) and its sessions (storage/sessions.py),
called as ASGI apps on the test store: sign-in, cookie, CSRF checks, sign-out,
security headers, assets; and the Stats API's acceptance of the cookie (api/auth.py).
The page itself is tested in Chromium (tests/browser/test_dashboard.py)."""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from api.auth import authenticate_caller
from dashboard.app import DashboardApp
from dashboard.assets import Assets, version_of
from dashboard.security import Proxies
from storage.funnels import add_funnel, remove_funnel
from storage.goals import add_goal, remove_goal
from storage.sessions import SessionCache, create_session, hash_session, revoke_session
from storage.sites import add_site, list_sites, remove_site, set_timezone
from storage.tokens import TokenDirectory, create_token, revoke_token
from tests.server import BeaconServer, cli
from web.messages import Request, Response
from web.routing import Router

HOST = "dash.test:8000"
ORIGIN = f"http://{HOST}"


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    def header(self, name: bytes) -> bytes:
        return next((v for k, v in self.headers if k == name), b"")

    def json(self):
        return orjson.loads(self.body)


def call(
    app,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    client: str = "127.0.0.1",
    query: bytes = b"",
) -> Answer:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "scheme": "http",
        "client": (client, 50000),
        "headers": [(b"host", HOST.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    answer = Answer(start["status"], start["headers"], b"".join(m.get("body", b"") for m in sent[1:]))
    answer.cookies = [v.decode() for k, v in answer.headers if k == b"set-cookie"]
    return answer


@pytest.fixture
def parts(store):
    store.command("TRUNCATE TABLE beacon.dashboard_sessions")
    for domain in ("alpha.test", "beta.test"):
        add_site(store, domain)
    tokens = TokenDirectory(store)
    sessions = SessionCache(store)
    app = DashboardApp(store, tokens, sessions, Assets.packaged(), Proxies(("10.0.0.0/8",)))
    tokens.refresh()
    return store, tokens, sessions, app


def every_site(store) -> list[str]:
    """The store is the session's, shared with other test files: an all-sites token sees
    their sites too."""
    return sorted(site.domain for site in list_sites(store))


def sign_in(app, token: str, client: str = "127.0.0.1", **headers: str) -> Answer:
    return call(
        app,
        "POST",
        "/dashboard/session",
        {"content-type": "application/json", "origin": ORIGIN, **headers},
        orjson.dumps({"token": token}),
        client=client,
    )


def cookie_of(answer: Answer) -> str:
    return re.match(r"beacon_session=([^;]*)", answer.cookies[0]).group(1)


def new_token(store, tokens, role: str, site: str = "") -> str:
    secret, _ = create_token(store, role, site)
    tokens.refresh()
    return secret


def test_signing_in_exchanges_a_token_for_an_httponly_strict_expiring_cookie(parts):
    store, tokens, sessions, app = parts
    answer = sign_in(app, new_token(store, tokens, "analyst"))
    assert answer.status == 200
    attributes = [a.strip() for a in answer.cookies[0].split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={7 * 24 * 3600}"} <= set(attributes)
    assert "Secure" not in attributes  # plain HTTP from a client that is not a trusted proxy
    assert {"alpha.test", "beta.test"} <= set(every_site(store))
    assert answer.json()["sites"] == every_site(store)
    secret = cookie_of(answer)
    # The store holds the session's hash, never the cookie's value.
    stored = store.rows("SELECT session_hash FROM beacon.dashboard_sessions")
    assert stored == [(hash_session(secret),)] and secret not in repr(stored)


def test_the_cookie_is_secure_behind_a_trusted_https_proxy_only(parts):
    store, tokens, sessions, app = parts
    token = new_token(store, tokens, "analyst")
    proxied = sign_in(app, token, **{"x-forwarded-proto": "https", "origin": f"https://{HOST}"}, client="10.1.2.3")
    assert "Secure" in [a.strip() for a in proxied.cookies[0].split(";")]
    # Anyone else saying https is not believed (the origin then does not match either).
    forged = sign_in(app, token, **{"x-forwarded-proto": "https"}, client="203.0.113.9")
    assert forged.status == 200 and "Secure" not in forged.cookies[0]


def test_state_changes_from_another_site_or_as_a_form_are_refused(parts):
    store, tokens, sessions, app = parts
    token = new_token(store, tokens, "analyst")
    assert sign_in(app, token, **{"sec-fetch-site": "cross-site"}).status == 403
    assert sign_in(app, token, **{"sec-fetch-site": "same-site"}).status == 403
    assert sign_in(app, token, origin="https://evil.test").status == 403
    assert sign_in(app, token, origin="null").status == 403
    form = call(
        app,
        "POST",
        "/dashboard/session",
        {"content-type": "application/x-www-form-urlencoded", "origin": ORIGIN},
        f"token={token}".encode(),
    )
    assert form.status == 415
    assert sign_in(app, token, **{"sec-fetch-site": "same-origin"}).status == 200
    secret = cookie_of(sign_in(app, token))
    cross = call(
        app, "DELETE", "/dashboard/session", {"cookie": f"beacon_session={secret}", "sec-fetch-site": "cross-site"}
    )
    assert cross.status == 403
    assert (
        call(app, "GET", "/dashboard/session", {"cookie": f"beacon_session={secret}"}).status == 200
    )  # still signed in


def test_sign_in_reads_the_media_type_whatever_its_case_and_parameters(parts):
    store, tokens, sessions, app = parts
    token = new_token(store, tokens, "analyst")
    assert sign_in(app, token, **{"content-type": "Application/JSON; charset=utf-8"}).status == 200
    assert sign_in(app, token, **{"content-type": "application/jsonx"}).status == 415


def test_only_known_analyst_or_admin_tokens_sign_in(parts):
    store, tokens, sessions, app = parts
    assert sign_in(app, "bk_" + "x" * 43).status == 401
    assert sign_in(app, new_token(store, tokens, "privacy")).status == 403
    assert sign_in(app, new_token(store, tokens, "admin")).status == 200
    assert (
        call(app, "POST", "/dashboard/session", {"content-type": "application/json", "origin": ORIGIN}, b"{}").status
        == 400
    )
    assert store.rows("SELECT count() FROM beacon.dashboard_sessions")[0][0] == 1


def test_a_site_limited_token_sees_its_site_only(parts):
    store, tokens, sessions, app = parts
    answer = sign_in(app, new_token(store, tokens, "analyst", "beta.test"))
    body = answer.json()
    assert body.pop("properties")["visit:source"] == {"label": "Source", "key": "source"}  # tests/test_registry.py
    time_on_page = {"label": "Time on page", "unit": "seconds", "short": "Time"}  # queries/metrics.py
    assert body.pop("metrics")["time_on_page"] == time_on_page
    assert body == {
        "token": {"id": answer.json()["token"]["id"], "role": "analyst", "site": "beta.test"},
        "can_share": False,  # an admin's session only
        "share_sites": [],
        "sites": ["beta.test"],
        "zones": {"beta.test": {"timezone": "UTC"}},
        "goals": {"beta.test": []},
        "funnels": {"beta.test": []},
        "currencies": {"beta.test": {}},
        "imported": {},
        "sso": False,
    }


def test_the_session_gives_each_sites_zone_and_when_it_took_it(parts):
    store, tokens, sessions, app = parts
    add_site(store, "zoned.test", timezone_name="Asia/Kathmandu")
    before = datetime.now(timezone.utc)
    changed = set_timezone(store, "zoned.test", "America/Toronto")
    try:
        zones = sign_in(app, new_token(store, tokens, "analyst")).json()["zones"]
        assert zones["alpha.test"] == {"timezone": "UTC"}  # never changed: every figure is in it
        since = datetime.fromisoformat(zones["zoned.test"]["zone_since"])
        assert since == changed.zone_since and before - timedelta(seconds=1) <= since <= datetime.now(timezone.utc)
        assert zones["zoned.test"]["zone_since"].endswith("Z")
        first_day = since.astimezone(ZoneInfo("America/Toronto")).date()
        assert zones["zoned.test"] == {
            "timezone": "America/Toronto",
            "zone_since": zones["zoned.test"]["zone_since"],
            "timezone_from": first_day.isoformat(),
        }
    finally:
        remove_site(store, "zoned.test")


def test_the_session_names_the_goals_of_the_sites_it_reads(parts):
    store, tokens, sessions, app = parts
    add_goal(store, "beta.test", "event", "Signup")
    add_goal(store, "beta.test", "page", "/thanks")
    add_goal(store, "beta.test", "event", "Purchase", "EUR")
    add_goal(store, "alpha.test", "event", "Hidden")
    try:
        answer = sign_in(app, new_token(store, tokens, "analyst", "beta.test"))
        assert answer.json()["goals"] == {"beta.test": ["Purchase", "Signup", "Visit /thanks"]}
        assert answer.json()["currencies"] == {"beta.test": {"Purchase": "EUR"}}
        everything = sign_in(app, new_token(store, tokens, "analyst"))
        assert everything.json()["goals"] == dict.fromkeys(every_site(store), []) | {
            "alpha.test": ["Hidden"],
            "beta.test": ["Purchase", "Signup", "Visit /thanks"],
        }
    finally:
        for site, kind, value in (
            ("beta.test", "event", "Purchase"),
            ("beta.test", "event", "Signup"),
            ("beta.test", "page", "/thanks"),
            ("alpha.test", "event", "Hidden"),
        ):
            remove_goal(store, site, kind, value)


def test_signing_out_ends_the_session_in_the_store_for_every_process(parts):
    store, tokens, sessions, app = parts
    secret = cookie_of(sign_in(app, new_token(store, tokens, "analyst")))
    cookie = {"cookie": f"other=1; beacon_session={secret}"}
    now = [0.0]
    other_process = SessionCache(store, fresh_seconds=1.0, clock=lambda: now[0])
    assert other_process.find(secret) is not None  # and cached for a second
    out = call(app, "DELETE", "/dashboard/session", {**cookie, "origin": ORIGIN})
    assert out.status == 204 and "Max-Age=0" in out.cookies[0]
    assert call(app, "GET", "/dashboard/session", cookie).status == 401  # this process: at once
    assert other_process.find(secret) is not None  # another process: until its cache entry ages
    now[0] += 1.01
    assert other_process.find(secret) is None


def test_a_revoked_token_ends_its_sessions(parts):
    store, tokens, sessions, app = parts
    token = new_token(store, tokens, "analyst")
    secret = cookie_of(sign_in(app, token))
    fresh = SessionCache(store)
    assert fresh.find(secret).role == "analyst"
    revoke_token(store, fresh.find(secret).id)
    assert SessionCache(store).find(secret) is None


def test_a_session_expires(parts):
    store, tokens, sessions, app = parts
    token = new_token(store, tokens, "analyst")
    secret = create_session(store, tokens.find(token).id, lifetime_seconds=1)
    assert SessionCache(store).find(secret) is not None
    deadline = time.monotonic() + 5
    while SessionCache(store).find(secret) is not None:
        assert time.monotonic() < deadline, "the session outlived its expiry"
        time.sleep(0.1)


def test_forged_or_malformed_cookies_are_refused_without_a_read(parts, monkeypatch):
    store, tokens, sessions, app = parts
    reads = []
    monkeypatch.setattr("storage.sessions.read_session", lambda s, h: reads.append(h))
    cache = SessionCache(store)
    for value in ("", "x", "bs_short", "bk_" + "a" * 43, "bs_" + "é" * 43):
        assert cache.find(value) is None
    assert reads == []
    assert cache.find("bs_" + "a" * 43) is None and len(reads) == 1
    assert cache.find("bs_" + "a" * 43) is None and len(reads) == 1  # the refusal is cached too


def request_with(method: str, headers: dict[str, str]) -> Request:
    scope = {"method": method, "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope, None)


def test_the_stats_api_takes_the_cookie_for_reads_only_and_as_an_analyst_at_most(parts):
    store, tokens, sessions, app = parts
    admin = new_token(store, tokens, "admin")
    secret = cookie_of(sign_in(app, admin))
    cookie = {"cookie": f"beacon_session={secret}"}

    def who(method: str, headers: dict[str, str]):
        return asyncio.run(authenticate_caller(request_with(method, headers), tokens, sessions))

    assert who("GET", cookie).role == "analyst"  # an admin's session reads statistics, no more
    refused = who("POST", cookie)  # a state change needs the token itself
    assert isinstance(refused, Response) and refused.status == 401
    assert who("POST", {**cookie, "authorization": f"Bearer {admin}"}).role == "admin"  # Bearer unchanged
    assert who("GET", {"authorization": f"Bearer {admin}"}).role == "admin"
    ended = who("GET", {"cookie": "beacon_session=bs_" + "b" * 43})
    assert isinstance(ended, Response) and ended.status == 401
    revoke_session(store, secret)
    sessions.forget(secret)
    assert who("GET", cookie).status == 401


def test_every_dashboard_response_carries_a_strict_content_security_policy(parts):
    store, tokens, sessions, app = parts
    answers = [
        call(app, "GET", "/dashboard"),
        call(app, "GET", "/dashboard/assets/dashboard.js"),
        call(app, "GET", "/dashboard/nothing"),
        call(app, "GET", "/dashboard/session"),
        call(app, "PUT", "/dashboard/session"),
        sign_in(app, "bk_" + "x" * 43),
    ]
    assert [a.status for a in answers] == [200, 200, 404, 401, 405, 401]
    for answer in answers:
        policy = answer.header(b"content-security-policy").decode()
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe" not in policy and "http" not in policy and "*" not in policy
        assert "frame-ancestors 'none'" in policy
        # x-content-type-options: added by the HTTP server to every answer (tests/test_edge.py)


def test_the_page_names_each_asset_with_its_version_and_versioned_assets_are_cached_for_good(parts):
    store, tokens, sessions, app = parts
    page = call(app, "GET", "/dashboard")
    assert page.header(b"cache-control") == b"no-cache"
    html = page.body.decode()
    assert not re.search(r"<script(?![^>]*\ssrc=)", html) and "<style" not in html and "style=" not in html
    named = dict(re.findall(r"/dashboard/assets/([\w.]+)\?v=(\w+)", html))
    assert set(named) == {"dashboard.js", "dashboard.css", "icon.svg"}
    for name, version in named.items():
        plain = call(app, "GET", f"/dashboard/assets/{name}")
        assert version == version_of(plain.body)
        pinned = call(
            app, "GET", f"/dashboard/assets/{name}", {"accept-encoding": "gzip, br"}, query=f"v={version}".encode()
        )
        assert pinned.header(b"cache-control") == b"public, max-age=31536000, immutable"
        assert gzip.decompress(pinned.body) == plain.body and pinned.header(b"content-encoding") == b"gzip"
        old = call(app, "GET", f"/dashboard/assets/{name}", query=b"v=000000000000")
        assert old.header(b"cache-control") == b"no-cache"  # an old page's request: revalidated
        again = call(app, "GET", f"/dashboard/assets/{name}", {"if-none-match": plain.header(b"etag").decode()})
        assert again.status == 304 and again.body == b""
    assert call(app, "GET", "/dashboard/assets/index.html").status == 404


def test_the_root_leads_to_the_dashboard(parts):
    store, tokens, sessions, app = parts
    router = Router(app.routes(), {"/dashboard": app})
    answer = call(router, "GET", "/")
    assert answer.status == 302 and answer.header(b"location") == b"/dashboard"
    assert call(router, "GET", "/dashboard").status == 200


def test_a_session_holds_in_every_http_process_of_workers_2_and_ends_in_all(tmp_path):
    """--workers 2 shares no memory: a session made by one process must be honoured by
    the other at once, and a sign-out in one must end it in both."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), "alpha.test")
    with BeaconServer(data_dir, "--workers", "2") as server:
        token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()

        def fresh_connection(method: str, path: str, **kwargs) -> httpx.Response:
            return httpx.request(method, server.url + path, timeout=30, **kwargs)  # a new connection: either process

        deadline = time.monotonic() + 5
        while (signed := fresh_connection("POST", "/dashboard/session", json={"token": token})).status_code != 200:
            assert time.monotonic() < deadline, signed.text  # each process reads new tokens within a second
            time.sleep(0.1)
        cookie = {"cookie": f"beacon_session={signed.cookies['beacon_session']}"}
        reads = [fresh_connection("GET", "/dashboard/session", headers=cookie) for _ in range(20)]
        assert [r.status_code for r in reads] == [200] * 20
        # The Stats API takes it too: past the session check, an unknown site is 404 (401 without it).
        reads = [
            fresh_connection("GET", "/api/v1/stats/aggregate?site_id=nowhere.test", headers=cookie) for _ in range(20)
        ]
        assert [r.status_code for r in reads] == [404] * 20
        assert fresh_connection("DELETE", "/dashboard/session", headers=cookie).status_code == 204
        deadline = time.monotonic() + 3  # the other process: within its cache's second
        while True:
            statuses = {fresh_connection("GET", "/dashboard/session", headers=cookie).status_code for _ in range(10)}
            if statuses == {401}:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)


def test_the_session_names_the_funnels_of_the_sites_it_reads(parts):
    store, tokens, sessions, app = parts
    add_funnel(store, "beta.test", "Signup", ["page:/pricing", "event:Signup"])
    add_funnel(store, "alpha.test", "Hidden", ["page:/", "event:Play"])
    try:
        answer = sign_in(app, new_token(store, tokens, "analyst", "beta.test"))
        assert answer.json()["funnels"] == {"beta.test": ["Signup"]}
        everything = sign_in(app, new_token(store, tokens, "analyst"))
        expected = dict.fromkeys(every_site(store), []) | {"alpha.test": ["Hidden"], "beta.test": ["Signup"]}
        assert everything.json()["funnels"] == expected
    finally:
        remove_funnel(store, "beta.test", "Signup")
        remove_funnel(store, "alpha.test", "Hidden")
