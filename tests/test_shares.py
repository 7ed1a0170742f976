"""Shared links (storage/shares.py, dashboard/share.py, dashboard/share_admin.py)
against a real ``beacon serve``: the CLI, the page's headers (noindex, frame-ancestors),
the Stats API read through a share and nothing else (no other site, no privacy API,
no write, no v2 POST), passwords and their passes, CSRF, revocation and expiry, the
rate limits, bad input, and the dashboard's management routes for admins. The page
itself is tested in Chromium (tests/browser/test_shares.py)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson
import pytest

from storage.control import RemoteStore, socket_path
from tests.faults import wait_for
from tests.server import BEACON, BeaconServer, cli

SITE, OTHER = "shared.test", "private.test"
STATS_ROUTES = ("aggregate", "timeseries", "breakdown", "realtime/visitors")


def make_events(site: str, visitors: int) -> list[dict]:
    """One pageview per visitor, each on its own day of the last 20 days."""
    rows = []
    for n in range(visitors):
        ts = datetime.now(timezone.utc).replace(hour=12) - timedelta(days=1 + n % 20)
        rows.append(
            {
                "event_id": f"00000000-0000-4000-8000-{abs(hash(site)) % 10**6:06d}{n:06d}",
                "site": site,
                "type": "pageview",
                "ts": ts.strftime("%Y-%m-%d %H:%M:%S.000"),
                "hostname": site,
                "path": "/" if n % 2 else "/pricing",
                "url": f"https://{site}/",
                "visitor_id": 1000 + n,
            }
        )
    return rows


def share_create(data_dir: Path, server: BeaconServer, site: str, *options: str, password: str = "") -> str:
    """The secret of a new shared link (from the URL the CLI prints)."""
    args = ("share", "create", site, "--data-dir", str(data_dir), "--port", str(server.port), *options)
    if password:
        args += ("--password",)
    done = subprocess.run([*BEACON, *args], input=password + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(f"http://127.0.0.1:{server.port}/share/sh_"), url
    return url.rsplit("/", 1)[1]


def shares_listed(data_dir: Path) -> dict[str, list[str]]:
    out = cli("share", "list", "--data-dir", str(data_dir)).stdout.splitlines()
    assert out[0] == "id\tsite\tpassword\texpires\tembed_origins\tcreated\trevoked"
    return {line.split("\t")[0]: line.split("\t") for line in out[1:]}


def id_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def poll_status(get, expected: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = get()
        if r.status_code == expected or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


class Deployment:
    def __init__(self, server: BeaconServer, data_dir: Path, analyst: str, admin: str):
        self.server, self.data_dir, self.analyst, self.admin = server, data_dir, analyst, admin

    def get(self, path: str, credential: str = "", **params) -> httpx.Response:
        headers = {"X-Beacon-Share": credential} if credential else {}
        return httpx.get(f"{self.server.url}{path}", params=params, headers=headers, timeout=30)

    def stats(self, kind: str, credential: str = "", token: str = "", **params) -> httpx.Response:
        headers = {"X-Beacon-Share": credential} if credential else {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{self.server.url}/api/v1/stats/{kind}", params=params, headers=headers, timeout=30)

    def unlock(self, secret: str, password: str, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}/share/{secret}/unlock",
            content=orjson.dumps({"password": password}),
            headers={"content-type": "application/json", **headers},
            timeout=30,
        )


def start(tmp_path_factory, *extra: str) -> Deployment:
    data_dir = tmp_path_factory.mktemp("shares") / "data"
    server = BeaconServer(data_dir, *extra).start()
    for site in (SITE, OTHER):
        cli("sites", "add", site, "--data-dir", str(data_dir))
    store = RemoteStore(socket_path(data_dir))
    try:
        rows = make_events(SITE, 30) + make_events(OTHER, 7)
        store.command(
            "INSERT INTO beacon.events FORMAT JSONEachRow\n" + "\n".join(orjson.dumps(r).decode() for r in rows)
        )
    finally:
        store.close()
    analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
    admin = cli("tokens", "create", "--role", "admin", "--data-dir", str(data_dir)).stdout.strip()
    return Deployment(server, data_dir, analyst, admin)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = start(tmp_path_factory, "--share-password-per-minute", "600")
    yield running
    running.server.stop()


# --- the link and its page -------------------------------------------------------------


def test_the_cli_prints_a_link_once_and_lists_it_without_its_secret(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE, "--expires", "30d")
    listed = shares_listed(deployment.data_dir)
    row = listed[id_of(secret)]
    assert row[1:3] == [SITE, "no"] and row[4] == "-" and row[6] == "no"
    expires = datetime.strptime(row[3], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((expires - datetime.now(timezone.utc)) - timedelta(days=30)) < timedelta(minutes=2)
    stored = deployment.server.query("SELECT * FROM beacon.shares")
    assert secret not in orjson.dumps(stored).decode()  # only its hash


def test_the_page_is_noindex_and_framed_by_no_one_unless_embedded_from_its_allowlist(deployment):
    plain = share_create(deployment.data_dir, deployment.server, SITE)
    allowed = "http://127.0.0.1:9"
    embeddable = share_create(deployment.data_dir, deployment.server, SITE, "--embed-origin", allowed + "/")
    for secret, query, ancestors in (
        (plain, {}, "'none'"),
        (plain, {"embed": "true"}, "'none'"),
        (embeddable, {}, "'none'"),  # a page that is not the embed stays unframable
        (embeddable, {"embed": "true"}, allowed),
    ):
        r = deployment.get(f"/share/{secret}", **query)
        assert r.status_code == 200
        assert r.headers["x-robots-tag"].startswith("noindex")
        assert '<meta name="robots" content="noindex">' in r.text
        assert r.headers["content-security-policy"].endswith(f"frame-ancestors {ancestors}")
        assert ("x-frame-options" in r.headers) == (ancestors == "'none'")


def test_a_sites_allowlist_lets_its_pages_frame_every_link_of_the_site_only(deployment):
    """The site's own allowlist (sites set --embed-origin) adds to each link's; another
    site's links, and pages that are not the embed, stay unframable; emptied, it is gone."""
    site_page, link_page = "https://www.news.example", "https://agency.example:8443"
    plain = share_create(deployment.data_dir, deployment.server, SITE)
    own = share_create(deployment.data_dir, deployment.server, SITE, "--embed-origin", link_page)
    elsewhere = share_create(deployment.data_dir, deployment.server, OTHER)
    set_embeds = ["sites", "set", SITE, "--data-dir", str(deployment.data_dir)]
    said = cli(*set_embeds, "--embed-origin", site_page + "/", "--embed-origin", "HTTPS://WWW.NEWS.EXAMPLE").stdout
    assert said == f"{SITE}: shared links embeddable from {site_page}\n"

    def ancestors(secret: str, **query: str) -> str:
        return (
            deployment.get(f"/share/{secret}", **query).headers["content-security-policy"].split("frame-ancestors ")[1]
        )

    def shown(secret: str, expected: str) -> bool:  # a link's answer is kept for a second
        return ancestors(secret, embed="true") == expected

    wait_for(lambda: shown(plain, site_page), 10, "the site's allowlist on its link")
    wait_for(lambda: shown(own, f"{link_page} {site_page}"), 10, "the link's own origins first, then the site's")
    assert ancestors(elsewhere, embed="true") == "'none'" and ancestors(plain) == "'none'"
    cli(*set_embeds, "--no-embed-origins")
    wait_for(lambda: shown(plain, "'none'") and shown(own, link_page), 10, "the emptied allowlist")
    for bad in (["--embed-origin", "javascript:alert(1)"], ["--embed-origin", site_page, "--no-embed-origins"], []):
        refused = cli(*set_embeds, *bad, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (bad, refused.stderr)


def test_unknown_or_malformed_links_are_404_and_other_methods_405(deployment):
    assert deployment.get("/share/sh_" + "A" * 32).status_code == 404
    assert deployment.get("/share/nonsense%00").status_code == 404
    assert deployment.get("/share/").status_code == 404
    secret = share_create(deployment.data_dir, deployment.server, SITE)
    assert deployment.get(f"/share/{secret}/elsewhere").status_code == 404
    assert httpx.post(f"{deployment.server.url}/share/{secret}").status_code == 405
    assert httpx.get(f"{deployment.server.url}/share/{secret}/unlock").status_code == 405


# --- what a share reads ----------------------------------------------------------------


def test_a_share_reads_its_sites_figures_as_the_api_gives_them(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE)
    about = deployment.get(f"/share/{secret}/about", secret)
    assert about.status_code == 200 and about.json()["sites"] == [SITE]
    expected_visitors = len(make_events(SITE, 30))  # one visitor each
    params = {"site_id": SITE, "period": "30d", "metrics": "visitors,pageviews"}
    shared = deployment.stats("aggregate", secret, **params)
    assert shared.status_code == 200, shared.text
    assert shared.json() == deployment.stats("aggregate", token=deployment.analyst, **params).json()
    assert shared.json()["results"]["visitors"]["value"] == expected_visitors
    pages = deployment.stats("breakdown", secret, site_id=SITE, period="30d", property="event:page")
    assert {r["page"]: r["visitors"] for r in pages.json()["results"]} == {"/": 15, "/pricing": 15}


def test_a_share_cannot_read_another_site_the_privacy_api_or_write(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE)
    for kind in STATS_ROUTES:
        r = deployment.stats(kind, secret, site_id=OTHER, period="30d", property="event:page")
        assert r.status_code == 403, (kind, r.text)
        assert "results" not in r.text
    assert deployment.stats("funnel", secret, site_id=OTHER, period="30d", funnel="x").status_code == 403
    headers = {"X-Beacon-Share": secret, "content-type": "application/json"}
    v2 = httpx.post(
        f"{deployment.server.url}/api/v2/query",
        content=orjson.dumps({"site_id": SITE, "metrics": ["visitors"], "date_range": "30d"}),
        headers=headers,
    )
    assert v2.status_code == 403
    for action in ("export", "erase", "optout"):
        r = httpx.post(
            f"{deployment.server.url}/api/v1/privacy/{action}", content=b'{"device_id": "d"}', headers=headers
        )
        assert r.status_code == 403, (action, r.text)
    other_link = share_create(deployment.data_dir, deployment.server, OTHER)
    assert deployment.get(f"/share/{other_link}/about", secret).status_code == 401  # one link's header opens no other
    # The dashboard's own routes know no share: no session, no token, no management.
    assert deployment.get("/dashboard/session", secret).status_code == 401
    assert deployment.get("/dashboard/shares", secret).status_code == 403
    # A share with a token as well is ambiguous, not the stronger of the two.
    both = httpx.get(
        f"{deployment.server.url}/api/v1/stats/aggregate",
        params={"site_id": OTHER},
        headers={"X-Beacon-Share": secret, "Authorization": f"Bearer {deployment.admin}"},
    )
    assert both.status_code == 400


def test_made_up_or_altered_credentials_open_nothing(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE)
    altered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert deployment.stats("aggregate", altered, site_id=SITE).status_code == 404
    assert deployment.stats("aggregate", "sh_" + "x" * 32, site_id=SITE).status_code == 404
    assert deployment.stats("aggregate", secret + ".99999999999.00", site_id=SITE).status_code == 401


# --- passwords -------------------------------------------------------------------------


def test_a_password_share_opens_with_a_pass_and_only_then(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE, password="correct horse")
    assert shares_listed(deployment.data_dir)[id_of(secret)][2] == "yes"
    stored = orjson.dumps(deployment.server.query("SELECT password_hash FROM beacon.shares")).decode()
    assert "correct horse" not in stored and "$argon2id$" in stored
    assert deployment.get(f"/share/{secret}").status_code == 200  # the page, which asks for it
    refused = deployment.get(f"/share/{secret}/about", secret)
    assert refused.status_code == 401 and refused.json()["password_required"] is True
    assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 401  # the link alone opens nothing
    assert deployment.unlock(secret, "wrong").status_code == 403
    opened = deployment.unlock(secret, "correct horse")
    assert opened.status_code == 200
    pass_ = opened.json()["pass"]
    assert pass_.startswith(secret + ".")
    assert deployment.stats("aggregate", pass_, site_id=SITE, period="30d").status_code == 200
    assert deployment.get(f"/share/{secret}/about", pass_).json()["share"]["password"] is True
    forged = pass_.rsplit(".", 1)[0] + "." + "0" * 64
    assert deployment.stats("aggregate", forged, site_id=SITE).status_code == 401
    later = f"{secret}.{int(time.time()) + 10**6}.{pass_.rsplit('.', 1)[1]}"  # its expiry pushed back
    assert deployment.stats("aggregate", later, site_id=SITE).status_code == 401
    assert deployment.stats("aggregate", pass_, site_id=OTHER).status_code == 403


def test_the_password_form_is_safe_from_other_sites_and_bad_input(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE, password="pw")
    assert deployment.unlock(secret, "pw", **{"sec-fetch-site": "cross-site"}).status_code == 403
    assert deployment.unlock(secret, "pw", origin="https://evil.example").status_code == 403
    assert deployment.unlock(secret, "pw", **{"sec-fetch-site": "same-origin"}).status_code == 200
    url = f"{deployment.server.url}/share/{secret}/unlock"
    assert httpx.post(url, content=b"password=pw").status_code == 415
    assert httpx.post(url, content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert httpx.post(url, content=b'{"password": 3}', headers={"content-type": "application/json"}).status_code == 400
    big = orjson.dumps({"password": "x" * 5000})
    assert httpx.post(url, content=big, headers={"content-type": "application/json"}).status_code == 413
    plain = share_create(deployment.data_dir, deployment.server, SITE)
    assert deployment.unlock(plain, "anything").status_code == 409


def test_a_password_is_never_in_the_log(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE, password="s3cret-in-logs?")
    deployment.unlock(secret, "s3cret-in-logs?")
    deployment.unlock(secret, "another-guess-xyz")
    text = deployment.server.log.read_text()
    assert "s3cret-in-logs?" not in text and "another-guess-xyz" not in text
    assert secret not in text


# --- revocation and expiry -------------------------------------------------------------


def test_a_revoked_link_and_its_open_pages_are_refused(deployment):
    plain = share_create(deployment.data_dir, deployment.server, SITE)
    locked = share_create(deployment.data_dir, deployment.server, SITE, password="pw")
    pass_ = deployment.unlock(locked, "pw").json()["pass"]
    assert deployment.stats("aggregate", plain, site_id=SITE).status_code == 200
    assert deployment.stats("aggregate", pass_, site_id=SITE).status_code == 200
    for secret in (plain, locked):
        assert cli("share", "revoke", id_of(secret), "--data-dir", str(deployment.data_dir)).stdout.strip() == (
            f"revoked {id_of(secret)}"
        )
    for secret, credential in ((plain, plain), (locked, pass_)):
        r = poll_status(lambda c=credential: deployment.stats("aggregate", c, site_id=SITE), 410)
        assert r.status_code == 410, r.text
        page = deployment.get(f"/share/{secret}")
        assert page.status_code == 410 and "revoked or has expired" in page.text
        assert page.headers["x-robots-tag"].startswith("noindex")
        assert deployment.get(f"/share/{secret}/about", credential).status_code == 410
    assert deployment.unlock(locked, "pw").status_code == 410
    assert shares_listed(deployment.data_dir)[id_of(plain)][6] == "yes"
    again = cli("share", "revoke", id_of(plain), "--data-dir", str(deployment.data_dir), check=False)
    assert again.returncode != 0 and "no active shared link" in again.stderr


def test_an_expired_link_is_refused(deployment):
    secret = share_create(deployment.data_dir, deployment.server, SITE, "--expires", "2s")
    assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 200
    r = poll_status(lambda: deployment.stats("aggregate", secret, site_id=SITE), 410, timeout=15)
    assert r.status_code == 410
    assert deployment.get(f"/share/{secret}").status_code == 410


def test_the_cli_refuses_bad_options(deployment):
    d = str(deployment.data_dir)
    assert cli("share", "create", "nowhere.test", "--data-dir", d, check=False).returncode == 2
    assert cli("share", "create", SITE, "--expires", "soon", "--data-dir", d, check=False).returncode == 2
    bad_origin = cli("share", "create", SITE, "--embed-origin", "https://a.test/path", "--data-dir", d, check=False)
    assert bad_origin.returncode == 2 and "origin" in bad_origin.stderr


# --- the dashboard's management ----------------------------------------------------------


@contextmanager
def sign_in(deployment: Deployment, token: str) -> Iterator[httpx.Client]:
    """A client with the session cookie of ``token``, calling from the dashboard's origin."""
    with httpx.Client(base_url=deployment.server.url, timeout=30, headers={"origin": deployment.server.url}) as client:
        r = client.post("/dashboard/session", json={"token": token})
        assert r.status_code == 200, r.text
        yield client


def test_an_admin_session_lists_creates_and_revokes_shares(deployment):
    with sign_in(deployment, deployment.admin) as admin:
        assert admin.get("/dashboard/session").json()["can_share"] is True
        made = admin.post(
            "/dashboard/shares", json={"site": SITE, "expires_days": 7, "embed_origins": ["http://x.test"]}
        )
        assert made.status_code == 201, made.text
        secret, share = made.json()["secret"], made.json()["share"]
        assert share["id"] == id_of(secret) and share["embed_origins"] == ["http://x.test"]
        assert share["id"] in {s["id"] for s in admin.get("/dashboard/shares").json()["shares"]}
        assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 200
        assert admin.delete(f"/dashboard/shares/{share['id']}").status_code == 204
        assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 410  # this process: at once
        assert admin.delete(f"/dashboard/shares/{share['id']}").status_code == 404


@contextmanager
def account_signed_in(deployment: Deployment, email: str, *roles: str) -> Iterator[httpx.Client]:
    """A client signed in as a new account with ``roles`` (``--role R --site S`` pairs), through its invitation."""
    invite = ["users", "invite", email, *roles, "--data-dir", str(deployment.data_dir)]
    secret = cli(*invite).stdout.strip().rsplit("=", 1)[1]
    with httpx.Client(base_url=deployment.server.url, timeout=30, headers={"origin": deployment.server.url}) as client:
        accepted = client.post("/dashboard/invitation", json={"invitation": secret, "password": "a long passphrase"})
        assert accepted.status_code == 200, accepted.text
        yield client


def test_an_admin_account_manages_the_links_of_its_own_site_only(deployment):
    others = share_create(deployment.data_dir, deployment.server, OTHER)
    # An admin limited to SITE: OTHER is another site's, whose link the CLI made.
    with account_signed_in(deployment, "site-admin@example.com", "--role", "admin", "--site", SITE) as admin:
        described = admin.get("/dashboard/session").json()
        assert described["token"] is None and described["user"]["email"] == "site-admin@example.com"
        assert described["can_share"] is True and described["share_sites"] == [SITE]
        made = admin.post("/dashboard/shares", json={"site": SITE})
        assert made.status_code == 201, made.text
        secret, share = made.json()["secret"], made.json()["share"]
        assert share["site"] == SITE and share["id"] == id_of(secret)
        listed = {s["id"]: s["site"] for s in admin.get("/dashboard/shares").json()["shares"]}
        assert share["id"] in listed and id_of(others) not in listed and set(listed.values()) == {SITE}
        assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 200

        refused = admin.post("/dashboard/shares", json={"site": OTHER})
        assert refused.status_code == 403 and refused.json()["field"] == "site"
        assert admin.delete(f"/dashboard/shares/{id_of(others)}").status_code == 404
        assert deployment.stats("aggregate", others, site_id=OTHER).status_code == 200  # still open

        assert admin.delete(f"/dashboard/shares/{share['id']}").status_code == 204
        assert deployment.stats("aggregate", secret, site_id=SITE).status_code == 410
    assert shares_listed(deployment.data_dir)[share["id"]][6] == "yes"  # revoked, in the store


def test_a_viewer_account_manages_no_links(deployment):
    with account_signed_in(deployment, "viewer@example.com", "--role", "viewer") as viewer:
        described = viewer.get("/dashboard/session").json()
        assert described["can_share"] is False and described["share_sites"] == []
        assert viewer.get("/dashboard/shares").status_code == 403
        assert viewer.post("/dashboard/shares", json={"site": SITE}).status_code == 403


def test_management_is_for_admins_from_the_dashboards_pages_with_valid_input(deployment):
    with sign_in(deployment, deployment.analyst) as analyst:
        assert analyst.get("/dashboard/session").json()["can_share"] is False
        assert analyst.get("/dashboard/shares").status_code == 403
        assert analyst.post("/dashboard/shares", json={"site": SITE}).status_code == 403
    with sign_in(deployment, deployment.admin) as admin:
        forged = admin.post("/dashboard/shares", json={"site": SITE}, headers={"origin": "https://evil.example"})
        assert forged.status_code == 403
        assert admin.post("/dashboard/shares", json={"site": "nowhere.test"}).status_code == 404
        for bad in (
            {},
            {"site": 3},
            {"site": SITE, "expires_days": -1},
            {"site": SITE, "embed_origins": ["javascript:x"]},
        ):
            assert admin.post("/dashboard/shares", json=bad).status_code == 400, bad
        assert admin.post("/dashboard/shares", content=b"site=x").status_code == 415
        assert admin.put("/dashboard/shares").status_code == 405
    site_admin = cli("tokens", "create", "--role", "admin", "--site", OTHER, "--data-dir", str(deployment.data_dir))
    with sign_in(deployment, site_admin.stdout.strip()) as limited:
        assert limited.post("/dashboard/shares", json={"site": SITE}).status_code == 403
        assert {s["site"] for s in limited.get("/dashboard/shares").json()["shares"]} <= {OTHER}


# --- rate limits -----------------------------------------------------------------------


def test_reads_and_password_attempts_are_rate_limited_per_client(tmp_path_factory):
    limited = start(
        tmp_path_factory,
        "--share-reads-per-minute",
        "1",
        "--share-reads-burst",
        "5",
        "--share-password-per-minute",
        "1",
    )
    try:
        secret = share_create(limited.data_dir, limited.server, SITE)
        codes = [limited.stats("aggregate", secret, site_id=SITE).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        r = limited.stats("aggregate", secret, site_id=SITE)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # A token's reads are not a share's: the API still answers them.
        assert limited.stats("aggregate", token=limited.analyst, site_id=SITE).status_code == 200
        locked = share_create(limited.data_dir, limited.server, SITE, password="pw")
        attempts = [limited.unlock(locked, f"guess{n}").status_code for n in range(7)]
        assert attempts == [403] * 5 + [429] * 2
        assert limited.unlock(locked, "pw").status_code == 429  # even the right one, until the wait is over
    finally:
        limited.server.stop()


def test_the_settings_are_documented():
    done = cli("serve", "--help")
    for option in ("--share-reads-per-minute", "--share-reads-burst", "--share-password-per-minute"):
        assert re.search(re.escape(option), done.stdout), option
    assert "BEACON_PUBLIC_URL" in cli("share", "create", "--help").stdout
