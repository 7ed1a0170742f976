"""Shared links in real headless Chromium, against the dashboard's known traffic
(tests/browser/dashboard_fixtures.py): a link opened in a fresh context shows the
site's numbers, the Stats API's, then is refused once revoked, also in a page
already open; a password link; an embed framed by a page of an allowed origin and
refused by the browser (CSP frame-ancestors) in a page of another; an admin making
and revoking a link from the dashboard; axe-core on each view."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.browser.dashboard_fixtures import OTHER_SITE, SITE, Dashboard, dashboard
from tests.browser.test_dashboard import Watched, api_tiles, axe_source, ready, tiles
from tests.server import BEACON, cli, free_port

__all__ = ["dashboard", "axe_source"]  # the fixtures, imported for this module

REFUSED = "This shared link was revoked or has expired."


def share_url(dashboard: Dashboard, site: str, *options: str, password: str = "") -> str:
    args = [*BEACON, "share", "create", site, "--data-dir", str(dashboard.server.data_dir)]
    args += ["--port", str(dashboard.server.port), *options] + (["--password"] if password else [])
    done = subprocess.run(args, input=password + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def share_id(url: str) -> str:
    return hashlib.sha256(urlsplit(url).path.rsplit("/", 1)[1].encode()).hexdigest()[:12]


@pytest.fixture
def fresh(browser):
    """Pages in fresh contexts (no cookie, no storage), closed after the test, none of
    which saw a script error or a CSP violation of its own."""
    opened: list[Watched] = []

    def open_page(**options) -> Watched:
        context = browser.new_context(user_agent=DESKTOP_UA, **options)
        watched = Watched(context, context.new_page())
        opened.append(watched)
        return watched

    yield open_page
    for watched in opened:
        watched.context.close()


def axe_violations(page, source: str) -> list:
    page.evaluate(source)  # through DevTools: the page's own CSP allows no injected script
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def refused_within(page, act, timeout: float = 10) -> None:
    """Repeat ``act`` (a change of view, which asks the API again) until the page says
    the link is refused: a revocation reaches every process within a second."""
    deadline = time.monotonic() + timeout
    while True:
        act()
        try:
            page.wait_for_selector(".shared-refused", timeout=1500)
            return
        except Exception:
            assert time.monotonic() < deadline, "the page still shows the revoked link's figures"


def test_a_link_shows_the_sites_numbers_then_is_refused_once_revoked(fresh, dashboard, axe_source):
    url = share_url(dashboard, SITE)
    watched = fresh()
    page = watched.page
    answer = page.goto(f"{url}?period=30d")
    assert answer.status == 200 and answer.headers["x-robots-tag"].startswith("noindex")
    ready(page)
    assert tiles(page) == api_tiles(dashboard, period="30d")
    assert page.locator(".site-name").inner_text() == SITE
    assert page.locator(".sign-out").count() == 0 and page.locator("#site").count() == 0
    assert page.locator(".panel-shares").count() == 0
    assert all(f"site_id={SITE}" in u for u in watched.requests if "/api/v1/stats/" in u)
    assert watched.context.cookies() == []
    assert axe_violations(page, axe_source) == []
    assert watched.complaints == []

    cli("share", "revoke", share_id(url), "--data-dir", str(dashboard.server.data_dir))
    periods = iter(["7d", "30d"] * 20)
    refused_within(page, lambda: page.select_option(".period-select", next(periods)))
    assert page.locator(".shared-refused").inner_text() == REFUSED
    assert page.locator(".tile").count() == 0  # the figures are gone too

    again = fresh().page
    assert again.goto(url).status == 410
    assert again.locator("h1").inner_text() == REFUSED


def test_a_password_link_asks_for_its_password_first(fresh, dashboard, axe_source):
    url = share_url(dashboard, SITE, password="open sesame")
    page = fresh().page
    page.goto(f"{url}?period=7d")
    page.wait_for_selector("#share-password")
    assert page.locator(".tile").count() == 0
    assert axe_violations(page, axe_source) == []
    page.fill("#share-password", "open says me")
    page.click("form.sign-in button[type=submit]")
    page.wait_for_function("() => document.querySelector('.form-error').textContent === 'Wrong password.'")
    page.fill("#share-password", "open sesame")
    page.click("form.sign-in button[type=submit]")
    ready(page)
    assert tiles(page) == api_tiles(dashboard, period="7d")


# --- embeds ----------------------------------------------------------------------------


class HostPage:
    """Another site's page that frames ``framed`` (set once the link is made): its own
    origin, on a free port."""

    def __init__(self):
        self.framed = ""
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    '<!doctype html><html lang="en"><title>host</title>'
                    f'<iframe src="{host.framed}" title="Statistics" width="1200" height="900"></iframe></html>'
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_pages():
    allowed, other = HostPage(), HostPage()
    yield allowed, other
    allowed.close()
    other.close()


def test_an_embed_shows_in_an_allowed_origins_page_and_is_refused_elsewhere(fresh, dashboard, host_pages):
    allowed, other = host_pages
    url = share_url(dashboard, SITE, "--embed-origin", allowed.origin)
    allowed.framed = other.framed = f"{url}?embed=true&period=30d"

    shown = fresh()
    shown.page.goto(allowed.origin)
    frame = shown.page.frame_locator("iframe")
    frame.locator("main[data-state=ready]").wait_for(timeout=30000)
    assert frame.locator("header.top, .realtime").count() == 0  # no chrome: no top bar, sign-out or links out
    assert frame.locator(".sign-out, a[href]").count() == 0
    values = {
        t.get_attribute("data-metric"): t.locator(".tile-value").inner_text() for t in frame.locator(".tile").all()
    }
    assert values == api_tiles(dashboard, period="30d")
    assert not any("realtime" in u for u in shown.requests)  # nowhere to show it: not asked
    assert shown.complaints == []

    refused = fresh()
    messages: list[str] = []
    refused.page.on("console", lambda m: messages.append(m.text))
    refused.page.goto(other.origin)
    deadline = time.monotonic() + 15
    while not any("frame-ancestors" in m for m in messages):
        assert time.monotonic() < deadline, messages
        refused.page.wait_for_timeout(100)
    assert any(other.origin in m or "ancestor" in m for m in messages)
    assert refused.page.frame_locator("iframe").locator("main").count() == 0  # nothing of the dashboard rendered

    # The same link opened as a page of its own (not an embed) stays unframable.
    allowed.framed = url
    unframed = fresh()
    notes: list[str] = []
    unframed.page.on("console", lambda m: notes.append(m.text))
    unframed.page.goto(allowed.origin)
    deadline = time.monotonic() + 15
    while not any("frame-ancestors" in m for m in notes):
        assert time.monotonic() < deadline, notes
        unframed.page.wait_for_timeout(100)
    assert unframed.page.frame_locator("iframe").locator("main").count() == 0


# --- management from the dashboard ---------------------------------------------------------


def test_an_admin_makes_and_revokes_a_link_in_the_dashboard(fresh, dashboard, axe_source):
    admin_token = cli(
        "tokens", "create", "--role", "admin", "--data-dir", str(dashboard.server.data_dir)
    ).stdout.strip()
    watched = fresh()
    page = watched.page
    page.goto(f"{dashboard.url}?site={SITE}&period=30d")
    sign_in_with_token(page, admin_token)
    ready(page)
    panel = page.locator(".panel-shares")
    panel.wait_for()
    page.select_option("#share-site", OTHER_SITE)
    page.fill("#share-days", "3")
    page.click(".share-form button[type=submit]")
    link = page.locator(".share-made a.share-url")
    link.wait_for()
    url = link.get_attribute("href")
    assert url.startswith(f"{dashboard.server.url}/share/sh_")
    row = page.locator(f'tr[data-share="{share_id(url)}"]')
    row.wait_for()
    assert OTHER_SITE in row.inner_text() and "active" in row.inner_text()
    assert axe_violations(page, axe_source) == []

    viewer = fresh().page
    viewer.goto(f"{url}?period=30d")
    ready(viewer)
    assert viewer.locator(".site-name").inner_text() == OTHER_SITE

    row.locator("button.revoke").click()
    page.wait_for_function(
        f"() => document.querySelector('tr[data-share=\"{share_id(url)}\"]')?.textContent.includes('revoked')"
    )
    again = fresh().page
    assert again.goto(url).status == 410
    assert watched.complaints == []


def test_an_admin_downloads_the_periods_own_figures_as_a_plausible_archive(fresh, dashboard, tmp_path):
    """The dashboard's export equals ``beacon export plausible`` of the same days (whose
    figures the archive round-trip test checks); an analyst sees no link, and is refused."""
    admin_token = cli("tokens", "create", "--role", "admin", "--data-dir", str(dashboard.server.data_dir)).stdout
    page = fresh().page
    page.goto(f"{dashboard.url}?site={SITE}&period=30d")
    sign_in_with_token(page, admin_token.strip())
    ready(page)
    link = page.locator("a.archive-export")
    asked = parse_qs(urlsplit(link.get_attribute("href")).query)
    with page.expect_download() as download:
        link.click()
    shown = tmp_path / "dashboard.zip"
    download.value.save_as(shown)
    first, last = asked["from"][0], asked["to"][0]
    assert asked["site"] == [SITE] and download.value.suggested_filename == (
        f"plausible-{SITE}-{first.replace('-', '')}-{last.replace('-', '')}.zip"
    )
    made = tmp_path / "cli.zip"
    data = ["--data-dir", str(dashboard.server.data_dir)]
    cli("export", "plausible", "--site", SITE, "--from", first, "--to", last, "--output", str(made), *data)
    with zipfile.ZipFile(shown) as got, zipfile.ZipFile(made) as expected:
        assert sorted(got.namelist()) == sorted(expected.namelist()) and got.namelist()
        assert all(got.read(name) == expected.read(name) for name in expected.namelist())

    analyst = fresh().page
    analyst.goto(f"{dashboard.url}?site={SITE}&period=30d")
    sign_in_with_token(analyst, dashboard.analyst)
    ready(analyst)
    assert analyst.locator("a.archive-export").is_hidden()
    refused = analyst.request.get(f"{dashboard.server.url}/dashboard/export/plausible?site={SITE}")
    assert refused.status == 403
    bad = page.request.get(f"{dashboard.server.url}/dashboard/export/plausible?site={SITE}&from=yesterday")
    assert bad.status == 400 and bad.json()["field"] == "from"
