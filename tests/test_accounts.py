"""Dashboard accounts (storage/accounts.py, dashboard/accounts.py, beacon users): an
invitation accepted, sign-in with password and TOTP, recovery codes, reset and removal,
the failure limits, the audit log, the sites an account reads through every Stats API
route, and that no password reaches a log or a table. Called as ASGI apps on the test
store, as tests/test_dashboard_app.py does; the pages are tested in Chromium
(tests/browser/test_accounts.py)."""

from __future__ import annotations

import logging
import re
import time

import httpx
import orjson
import pyotp
import pytest

from api.app import ApiApp
from api.stats import StatsAPI
from api.stats_v2 import StatsV2
from dashboard.app import DashboardApp
from dashboard.assets import Assets
from dashboard.limits import FailureWindow
from dashboard.security import Proxies
from storage import accounts
from storage.audit import audit
from storage.clickhouse import DATABASE
from storage.sessions import SessionCache
from storage.sites import add_site
from storage.tokens import TokenDirectory
from tests.server import BeaconServer, cli, free_port
from tests.smtp_inbox import smtp_server
from tests.test_dashboard_app import ORIGIN, call, cookie_of

PASSWORD = "correct horse battery staple 7"


@pytest.fixture
def app(store):
    for table in ("users", "user_roles", "invitations", "recovery_codes", "auth_log", "user_sessions"):
        store.command(f"TRUNCATE TABLE {DATABASE}.{table}")
    for domain in ("alpha.test", "beta.test"):
        add_site(store, domain)
    tokens = TokenDirectory(store)
    tokens.refresh()
    sessions = SessionCache(store, fresh_seconds=0.0)
    dashboard = DashboardApp(
        store,
        tokens,
        sessions,
        Assets.packaged(),
        Proxies(),
        failures_per_account=3,
        failures_per_client=FailureWindow(6, 900.0),
    )
    stats = StatsAPI(store)
    api = ApiApp(tokens, stats.routes() + StatsV2(store, stats.registered).routes(), sessions)
    return store, dashboard, api


def post(app, path: str, fields: dict, client: str = "127.0.0.1", cookie: str = "", **headers: str):
    headers = {"content-type": "application/json", "origin": ORIGIN, **headers}
    if cookie:
        headers["cookie"] = f"beacon_session={cookie}"
    return call(app, "POST", path, headers, orjson.dumps(fields), client=client)


def invited(store, email: str, role: str = "viewer", sites: tuple[str, ...] = ("alpha.test",)) -> str:
    secret, _ = accounts.invite(store, email, accounts.check_roles(role, sites))
    return secret


def accept(dashboard, secret: str, password: str = PASSWORD) -> str:
    answer = post(dashboard, "/dashboard/invitation", {"invitation": secret, "password": password})
    assert answer.status == 200, answer.body
    return cookie_of(answer)


def sign_in(dashboard, email: str, password: str = PASSWORD, code: str | None = None, client: str = "127.0.0.1"):
    fields = {"email": email, "password": password} | ({"code": code} if code else {})
    return post(dashboard, "/dashboard/session", fields, client=client)


def test_an_invitation_is_accepted_once_and_signs_the_user_in(app):
    store, dashboard, _ = app
    secret = invited(store, "Ana@Example.com")
    shown = post(dashboard, "/dashboard/invitation", {"invitation": secret})
    assert shown.status == 200 and shown.json() == {"email": "ana@example.com"}
    short = post(dashboard, "/dashboard/invitation", {"invitation": secret, "password": "short"})
    assert short.status == 400 and short.json()["field"] == "password"
    cookie = accept(dashboard, secret)
    assert cookie.startswith("bu_")
    who = call(dashboard, "GET", "/dashboard/session", {"cookie": f"beacon_session={cookie}"}).json()
    assert who["user"]["email"] == "ana@example.com" and who["sites"] == ["alpha.test"] and who["token"] is None
    again = post(dashboard, "/dashboard/invitation", {"invitation": secret, "password": PASSWORD})
    assert again.status == 404
    signed = sign_in(dashboard, "ana@example.com")
    assert signed.status == 200 and cookie_of(signed) != cookie  # a new id at every sign-in


def test_an_expired_or_forged_invitation_is_refused(app):
    store, dashboard, _ = app
    secret, _ = accounts.invite(store, "late@example.com", {"": "viewer"}, lifetime_seconds=1)
    deadline = time.monotonic() + 10
    while accounts.invited_user(store, secret) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert post(dashboard, "/dashboard/invitation", {"invitation": secret, "password": PASSWORD}).status == 404
    assert post(dashboard, "/dashboard/invitation", {"invitation": "bi_forged"}).status == 404
    assert post(dashboard, "/dashboard/invitation", {"invitation": 7}).status == 404


def test_sign_in_with_totp_and_a_recovery_code_once(app):
    store, dashboard, _ = app
    cookie = accept(dashboard, invited(store, "tess@example.com"))
    begun = post(dashboard, "/dashboard/account/totp", {}, cookie=cookie)
    assert begun.status == 200
    secret = re.search(r"secret=([A-Z2-7]+)", begun.json()["uri"]).group(1)
    qr = call(dashboard, "GET", "/dashboard/account/totp.svg", {"cookie": f"beacon_session={cookie}"})
    assert qr.status == 200 and qr.header(b"content-type") == b"image/svg+xml" and b"<svg" in qr.body
    assert post(dashboard, "/dashboard/account/totp/confirm", {"code": "000000"}, cookie=cookie).status == 400
    totp = pyotp.TOTP(secret)
    used = totp.now()
    confirmed = post(dashboard, "/dashboard/account/totp/confirm", {"code": used}, cookie=cookie)
    codes = confirmed.json()["recovery_codes"]
    assert confirmed.status == 200 and len(codes) == accounts.RECOVERY_CODES

    asked = sign_in(dashboard, "tess@example.com")
    assert asked.status == 401 and asked.json()["second_factor"] is True and not asked.cookies
    wrong = next(c for c in ("123456", "654321") if c not in (totp.at(time.time() + d) for d in (-30, 0, 30)))
    assert sign_in(dashboard, "tess@example.com", code=wrong).status == 401
    assert sign_in(dashboard, "tess@example.com", code=used).status == 401  # a code is taken once (RFC 6238 5.2)
    assert sign_in(dashboard, "tess@example.com", code=totp.at(time.time() + 30)).status == 200  # the next step's
    assert sign_in(dashboard, "tess@example.com", code=codes[0]).status == 200
    assert sign_in(dashboard, "tess@example.com", code=codes[0]).status == 401  # spent


def test_a_reset_ends_the_password_the_second_factor_and_the_sessions(app):
    store, dashboard, api = app
    cookie = accept(dashboard, invited(store, "rob@example.com"))
    link = accounts.reset(store, "rob@example.com")
    assert (
        call(
            api, "GET", "/api/v1/stats/aggregate", {"cookie": f"beacon_session={cookie}"}, query=b"site_id=alpha.test"
        ).status
        == 401
    )
    assert sign_in(dashboard, "rob@example.com").status == 401
    accept(dashboard, link, "a brand new password")
    assert sign_in(dashboard, "rob@example.com", "a brand new password").status == 200


def test_a_removed_user_is_signed_out_everywhere_and_cannot_sign_in(app):
    store, dashboard, api = app
    cookie = accept(dashboard, invited(store, "gone@example.com"))
    accounts.remove(store, "gone@example.com")
    headers = {"cookie": f"beacon_session={cookie}"}
    assert call(api, "GET", "/api/v1/stats/aggregate", headers, query=b"site_id=alpha.test").status == 401
    assert sign_in(dashboard, "gone@example.com").status == 401


def test_failed_sign_ins_are_limited_per_account_across_clients(app):
    store, dashboard, _ = app
    accept(dashboard, invited(store, "max@example.com"))
    for n in range(3):
        assert sign_in(dashboard, "max@example.com", "wrong password!", client=f"10.0.0.{n}").status == 401
    blocked = sign_in(dashboard, "max@example.com", client="10.0.0.9")  # the right password, from elsewhere
    assert blocked.status == 429 and int(blocked.header(b"retry-after")) > 0 and not blocked.cookies


def test_failed_sign_ins_are_limited_per_client_across_accounts(app):
    store, dashboard, _ = app
    accept(dashboard, invited(store, "kim@example.com"))
    for n in range(6):
        assert sign_in(dashboard, f"nobody{n}@example.com", "whatever it is").status == 401
    assert sign_in(dashboard, "kim@example.com").status == 429
    assert sign_in(dashboard, "kim@example.com", client="192.0.2.7").status == 200


def test_sign_ins_failures_and_role_changes_are_in_the_audit_log_without_secrets(app):
    store, dashboard, _ = app
    cookie = accept(dashboard, invited(store, "lee@example.com", "analyst", ("alpha.test", "beta.test")))
    sign_in(dashboard, "lee@example.com", "not the password")
    user = accounts.find_user(store, "lee@example.com")
    accounts.set_roles(store, user, {"alpha.test": "admin"}, "cli")
    events = [row[0] for row in store.rows(f"SELECT event FROM {DATABASE}.auth_log ORDER BY at")]
    assert events.count("role_granted") == 3 and events.count("role_revoked") == 1
    assert {"invited", "invitation_accepted", "sign_in", "sign_in_failed"} <= set(events)
    ttl = store.rows(
        f"SELECT create_table_query FROM system.tables WHERE database = '{DATABASE}' AND name = 'auth_log'"
    )
    assert "TTL" in ttl[0][0]
    assert cookie


def test_csrf_a_cross_site_or_form_post_is_refused(app):
    store, dashboard, _ = app
    secret = invited(store, "csrf@example.com")
    cross = post(
        dashboard,
        "/dashboard/invitation",
        {"invitation": secret, "password": PASSWORD},
        **{"sec-fetch-site": "cross-site"},
    )
    assert cross.status == 403
    form = call(
        dashboard,
        "POST",
        "/dashboard/session",
        {"content-type": "application/x-www-form-urlencoded", "origin": ORIGIN},
        b"email=a%40b.c&password=x",
    )
    assert form.status == 415
    accept(dashboard, secret)
    evil = sign_in_from("https://evil.test", dashboard)
    assert evil.status == 403 and not evil.cookies


def sign_in_from(origin: str, dashboard):
    return call(
        dashboard,
        "POST",
        "/dashboard/session",
        {"content-type": "application/json", "origin": origin},
        orjson.dumps({"email": "csrf@example.com", "password": PASSWORD}),
    )


def test_session_fixation_a_cookie_set_before_sign_in_is_not_kept(app):
    store, dashboard, _ = app
    accept(dashboard, invited(store, "fix@example.com"))
    planted = "bu_" + "A" * 43
    answer = post(dashboard, "/dashboard/session", {"email": "fix@example.com", "password": PASSWORD}, cookie=planted)
    assert answer.status == 200 and cookie_of(answer) != planted


# Every Stats API route a session may call (reads), with the other site asked for.
ROUTES = [
    ("/api/v1/stats/aggregate", b"site_id=beta.test&metrics=visitors"),
    ("/api/v1/stats/timeseries", b"site_id=beta.test"),
    ("/api/v1/stats/breakdown", b"site_id=beta.test&property=event:page"),
    ("/api/v1/stats/realtime/visitors", b"site_id=beta.test"),
    ("/api/v1/stats/funnel", b"site_id=beta.test&funnel=any"),
]


def test_no_account_reads_another_sites_numbers_through_any_api_route(app):
    store, dashboard, api = app
    for role in accounts.ROLES:
        cookie = accept(dashboard, invited(store, f"{role}@example.com", role, ("alpha.test",)))
        headers = {"cookie": f"beacon_session={cookie}"}
        for path, query in ROUTES:
            assert call(api, "GET", path, headers, query=query).status == 403, (role, path)
            own = query.replace(b"beta.test", b"alpha.test")
            assert call(api, "GET", path, headers, query=own).status in (200, 400), (role, path)
        v2 = call(
            api,
            "POST",
            "/api/v2/query",
            headers | {"content-type": "application/json"},
            orjson.dumps({"site_id": "beta.test", "metrics": ["visitors"], "date_range": "7d"}),
        )
        assert v2.status == 401  # a session reads through GET only; v2 takes a token
        privacy = call(api, "GET", "/api/v1/privacy/export", headers, query=b"device_id=x")
        assert privacy.status in (401, 404)


def test_a_password_is_never_logged_nor_stored_in_clear(app, caplog):
    store, dashboard, _ = app
    caplog.set_level(logging.DEBUG)
    marker = "Zebra-Parasol-" + str(time.time_ns())
    accept(dashboard, invited(store, "sec@example.com"), marker)
    sign_in(dashboard, "sec@example.com", marker)
    sign_in(dashboard, "sec@example.com", marker + "-wrong")
    assert marker not in caplog.text
    for (table,) in store.rows(
        f"SELECT name FROM system.tables WHERE database = '{DATABASE}' AND engine NOT LIKE '%View'"
    ):
        hits = store.rows(
            f"SELECT count() FROM {DATABASE}.`{table}` WHERE position(toString(tuple(*)), {{m:String}}) > 0",
            {"m": marker},
        )[0][0]
        assert hits == 0, table
    stored = store.rows(f"SELECT password_hash FROM {DATABASE}.users FINAL WHERE email = 'sec@example.com'")[0][0]
    assert stored.startswith("$argon2id$")


def test_privacy_audit_exempts_staff_emails_only(app):
    store, dashboard, _ = app
    invited(store, "staff@example.com")
    assert not [f for f in audit(store) if f.table == "users"]


def test_the_cli_invites_lists_resets_and_removes(tmp_path):
    data = str(tmp_path / "data")
    cli("sites", "add", "--data-dir", data, "alpha.test")
    made = cli(
        "users",
        "invite",
        "ops@example.com",
        "--role",
        "analyst",
        "--site",
        "alpha.test",
        "--data-dir",
        data,
        "--public-url",
        "https://stats.example.com/",
    )
    assert re.fullmatch(r"https://stats\.example\.com/dashboard/#invitation=bi_[\w-]{32}\n", made.stdout)
    listed = cli("users", "list", "--data-dir", data).stdout
    assert "ops@example.com\tanalyst@alpha.test\tinvited" in listed
    twice = cli("users", "invite", "ops@example.com", "--role", "viewer", "--data-dir", data, check=False)
    assert twice.returncode != 0 and "already has an account" in twice.stderr
    bad = cli("users", "invite", "not-an-address", "--role", "viewer", "--data-dir", data, check=False)
    assert bad.returncode != 0 and "not an e-mail address" in bad.stderr
    reset = cli("users", "reset", "ops@example.com", "--data-dir", data)
    assert "#invitation=bi_" in reset.stdout and reset.stdout != made.stdout
    cli("users", "remove", "ops@example.com", "--data-dir", data)
    assert "ops@example.com" not in cli("users", "list", "--data-dir", data).stdout


def test_with_an_smtp_server_the_invitation_and_a_reset_are_mailed(tmp_path):
    data = str(tmp_path / "data")
    cli("sites", "add", "--data-dir", data, "alpha.test")
    with smtp_server() as inbox:
        mail = ["--smtp-host", "127.0.0.1", "--smtp-port", str(inbox.port), "--smtp-security", "none"]
        mail += ["--mail-from", "beacon@stats.example.com", "--public-url", "https://stats.example.com"]
        made = cli(
            "users", "invite", "new@example.com", "--role", "viewer", "--site", "alpha.test", "--data-dir", data, *mail
        )
        (arrived,) = inbox.wait_for("new@example.com")
        link = made.stdout.strip()
        assert link.startswith("https://stats.example.com/dashboard/#invitation=bi_")
        message = arrived.message
        assert (message["From"], message["To"]) == ("beacon@stats.example.com", "new@example.com")
        assert message["Subject"] and message["Date"] and message["Message-ID"]
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert link in text and f'href="{link}"' in html and "viewer of alpha.test" in text
        reset = cli("users", "reset", "new@example.com", "--data-dir", data, *mail).stdout.strip()
        assert (
            reset != link
            and reset in inbox.wait_for("new@example.com", 2)[1].message.get_body(("plain",)).get_content()
        )
    # A server that takes no mail: the command fails, saying so, and the printed link stays valid.
    closed = ["--smtp-host", "127.0.0.1", "--smtp-port", str(free_port()), "--smtp-security", "none"]
    closed += ["--mail-from", "beacon@stats.example.com"]
    failed = cli("users", "invite", "other@example.com", "--role", "viewer", "--data-dir", data, *closed, check=False)
    assert failed.returncode == 1 and "was not mailed" in failed.stderr and "#invitation=bi_" in failed.stdout
    assert "other@example.com\t" in cli("users", "list", "--data-dir", data).stdout


def test_bad_bodies_get_a_clear_4xx_never_a_500(app):
    store, dashboard, _ = app
    headers = {"content-type": "application/json", "origin": ORIGIN}
    for path in ("/dashboard/session", "/dashboard/invitation", "/dashboard/account/totp/confirm"):
        for body in (b"[1, 2]", b"{not json", b'"text"', orjson.dumps({"email": ["a"], "password": 5})):
            answer = call(dashboard, "POST", path, headers, body)
            assert 400 <= answer.status < 500, (path, body, answer.status)
        assert call(dashboard, "POST", path, headers, b"{" + b" " * 5000 + b"}").status == 413
    assert call(dashboard, "GET", "/dashboard/account/totp.svg").status == 401
    assert call(dashboard, "PUT", "/dashboard/invitation").status == 405


def test_oidc_settings_map_groups_to_roles_and_refuse_the_rest():
    from common.settings import Settings
    from dashboard.oidc import OidcConfig

    settings = Settings(
        oidc_issuer="https://id.example.com/",
        oidc_client_id="beacon",
        oidc_client_secret="s",
        oidc_allowed_domain=("Example.com",),
        oidc_role=("marketing=viewer@shop.test", "analysts=analyst@shop.test", "ops=admin"),
    )
    config = OidcConfig.of(settings)
    assert config.issuer == "https://id.example.com" and config.redirect_uri.endswith("/dashboard/oidc/callback")
    both = {"email": "a@example.com", "groups": ["marketing", "analysts"]}
    assert config.refusal(both) is None and config.roles_for(both) == {"shop.test": "analyst"}  # the higher role
    assert config.roles_for({"groups": "ops"}) == {"": "admin"}  # a single group as a string
    assert config.refusal({"email": "a@other.test", "groups": ["ops"]}) == "domain not allowed"
    assert config.refusal({"email": "a@example.com", "groups": ["sales"]}) == "no allowed group"
    assert config.refusal({"email": "a@example.com", "email_verified": False, "groups": ["ops"]}) is not None
    assert config.refusal({"groups": ["ops"]}) == "no e-mail address"
    assert OidcConfig.of(Settings()) is None
    open_door = OidcConfig.of(Settings(oidc_issuer="https://id.test", oidc_client_id="c", oidc_client_secret="s"))
    assert open_door.roles_for({"email": "x@any.test"}) == {"": "viewer"}
    for bad in ({"oidc_role": ("marketing=owner",)}, {"oidc_issuer": "https://id.test"}, {"oidc_default_role": "x"}):
        with pytest.raises(ValueError):
            Settings(**bad)


def test_an_account_works_in_every_http_process_of_workers_2(tmp_path):
    """The HTTP processes of --workers 2 reach the store through the owner's control
    socket: an invitation accepted by one, the session honoured by both, and a removal
    through the CLI ending it in both."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), "alpha.test")
    with BeaconServer(data_dir, "--workers", "2") as server:
        link = cli("users", "invite", "w@example.com", "--role", "viewer", "--data-dir", str(data_dir)).stdout
        secret = link.strip().rsplit("=", 1)[1]

        def fresh(method: str, path: str, **kwargs) -> httpx.Response:
            return httpx.request(method, server.url + path, timeout=30, **kwargs)  # a new connection: either process

        accepted = fresh("POST", "/dashboard/invitation", json={"invitation": secret, "password": PASSWORD})
        assert accepted.status_code == 200, accepted.text
        cookie = {"cookie": f"beacon_session={accepted.cookies['beacon_session']}"}
        reads = [fresh("GET", "/api/v1/stats/aggregate?site_id=alpha.test", headers=cookie) for _ in range(10)]
        assert [r.status_code for r in reads] == [200] * 10
        signed = [fresh("POST", "/dashboard/session", json={"email": "w@example.com", "password": PASSWORD})
                  for _ in range(4)]  # fmt: skip
        assert [r.status_code for r in signed] == [200] * 4
        cli("users", "remove", "w@example.com", "--data-dir", str(data_dir))
        deadline = time.monotonic() + 5
        while {fresh("GET", "/dashboard/session", headers=cookie).status_code for _ in range(6)} != {401}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
