"""/beacon.js in real headless Chromium: what a visit sends is what is stored."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from streams.steps import pseudonymise
from tests.browser.browsing import DESKTOP_UA, rows_when
from tests.faults import wait_for

DEVICE_ID = "app-123"
ROWS = "SELECT type, name, path, props, device_id FROM beacon.events WHERE site = '{site}'"
LOADED = "window.beacon && window.beacon.loaded"


def stored(row: dict) -> tuple:
    """A row as the expectations below write it; engaged_ms is checked apart (it is a duration)."""
    props = {k: v for k, v in row["props"].items() if k != "engaged_ms"}
    return row["type"], row["name"], row["path"], tuple(sorted(props.items())), row["device_id"]


def expect(kind: str, path: str, props: dict | None = None, device: str = "") -> tuple:
    event_type, name = ("pageview", "") if kind == "pageview" else ("event", kind)
    return event_type, name, path, tuple(sorted((props or {}).items())), device


def collected(context, collector: str) -> list[dict]:
    """The beacons the tracker sends from pages of ``context``, as it sent them."""
    bodies: list[dict] = []
    context.on("request", lambda r: bodies.append(r.post_data_json) if r.url == f"{collector}/collect" else None)
    return bodies


def test_a_visit_is_stored_as_it_happened_with_consent_and_gpc(browser, deployment):
    server, site = deployment
    started = time.monotonic()
    device = pseudonymise(DEVICE_ID, (server.data_dir / "id.key").read_bytes().strip())

    context = browser.new_context(user_agent=DESKTOP_UA)
    context.route("https://www.wikipedia.org/**", lambda route: route.fulfill(status=204))  # a 204: the page stays
    context.route("https://cdn.example.org/**", lambda route: route.fulfill(status=204))
    sent = collected(context, server.url)
    page = context.new_page()
    # 127.0.0.1 in an automated browser, without data-allow-local: nothing at all.
    page.goto(f"{site.origin}/local")
    page.wait_for_function(LOADED)
    page.evaluate("beacon('event', 'Local')")
    # Two pages; the first queues an event before the tracker has loaded.
    page.goto(f"{site.origin}/")
    page.wait_for_function(LOADED)
    page.click("#to-app")
    page.wait_for_url("**/app")
    page.wait_for_function(LOADED)
    # The single-page app's routes: twice forward, the same URL again (not a view), back.
    page.evaluate("history.pushState({}, '', '/app/settings')")
    page.evaluate("history.pushState({}, '', '/app/settings')")
    page.evaluate("history.replaceState({}, '', '/app/settings')")
    page.evaluate("history.pushState({}, '', '/app/billing')")
    page.evaluate("history.back()")
    page.wait_for_function("location.pathname == '/app/settings'")
    page.evaluate("history.pushState({}, '', '/app/admin/users')")  # data-exclude="/app/admin/*"
    page.evaluate("history.back()")
    page.wait_for_function("location.pathname == '/app/settings'")
    # The device ID is known before consent, and must not leave the page until it.
    page.evaluate(f"beacon('consent', {{analytics: true}}, {{device_id: '{DEVICE_ID}'}})")
    page.evaluate("beacon('event', 'Signup', {props: {plan: 'pro', seats: 3}})")
    page.evaluate("beacon('consent', {device_id: true})")
    page.evaluate("beacon('event', 'Export', {props: {format: 'csv'}})")
    page.click("#download")
    page.click("#outbound")
    assert context.cookies() == [] and page.evaluate("localStorage.length + sessionStorage.length") == 0
    page.close(run_before_unload=True)

    # A second visitor, with Global Privacy Control on: consent given, no identifier.
    gpc = browser.new_context(user_agent=DESKTOP_UA, extra_http_headers={"Sec-GPC": "1"})
    gpc.add_init_script("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})")
    sent_with_gpc = collected(gpc, server.url)
    page = gpc.new_page()
    page.goto(f"{site.origin}/welcome")
    page.wait_for_function(LOADED)
    page.evaluate(f"beacon('consent', {{device_id: true}}, {{device_id: '{DEVICE_ID}'}})")
    page.evaluate("beacon('event', 'Export', {props: {format: 'pdf'}})")
    page.close(run_before_unload=True)
    elapsed_ms = (time.monotonic() - started) * 1000

    expected = [
        expect("Queued", "/", {"early": "true"}),  # from the queue, before the page view
        expect("pageview", "/"),
        expect("engagement", "/"),  # the page is left
        expect("pageview", "/app"),
        expect("engagement", "/app"),  # each SPA route ends with its engagement
        expect("pageview", "/app/settings"),
        expect("engagement", "/app/settings"),
        expect("pageview", "/app/billing"),
        expect("engagement", "/app/billing"),
        expect("pageview", "/app/settings"),  # back
        expect("engagement", "/app/settings"),  # to the excluded route: no view there, nor its engagement
        expect("pageview", "/app/settings"),  # back again
        expect("Signup", "/app/settings", {"plan": "pro", "seats": "3"}),  # ID known, not consented
        expect("Export", "/app/settings", {"format": "csv"}, device),
        expect("File Download", "/app/settings", {"url": "https://cdn.example.org/files/report.pdf"}, device),
        expect("Outbound Link: Click", "/app/settings", {"url": "https://www.wikipedia.org/wiki/Privacy"}, device),
        expect("engagement", "/app/settings", device=device),  # the tab is closed
        expect("pageview", "/welcome"),  # GPC: never an identifier
        expect("Export", "/welcome", {"format": "pdf"}),
        expect("engagement", "/welcome"),
    ]
    rows = rows_when(server, ROWS.format(site="shop.test"), lambda rows: len(rows) >= len(expected))
    assert sorted(map(stored, rows)) == sorted(expected)
    engaged = [int(r["props"]["engaged_ms"]) for r in rows if r["name"] == "engagement"]
    assert len(engaged) == 7 and all(0 < ms <= elapsed_ms for ms in engaged)

    # What left the pages: an identifier only after consent, never under GPC.
    # (The last engagement, sent as the tab closes, may leave after Playwright stops listening.)
    with_id = [b["name"] for b in sent if "device_id" in b]
    assert with_id[:3] == ["Export", "File Download", "Outbound Link: Click"] and with_id[3:] in ([], ["engagement"])
    assert all(b["device_id"] == DEVICE_ID for b in sent if "device_id" in b)
    assert sent_with_gpc and not any("device_id" in b for b in sent_with_gpc)
    assert all(
        b["consent"] == {"analytics": False, "device_id": True, "mac": False} for b in sent_with_gpc if "consent" in b
    )
    gpc.close()
    context.close()


def test_under_a_strict_content_security_policy_it_runs_and_violates_nothing(browser, deployment):
    server, site = deployment
    context = browser.new_context(user_agent=DESKTOP_UA)
    context.add_init_script(
        "window.violations = [];"
        "document.addEventListener('securitypolicyviolation', e => violations.push(e.violatedDirective))"
    )
    console: list[str] = []
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    # The control: the same policy blocks an inline script, and both signals show it.
    page.goto(f"{site.origin}/csp-control")
    page.wait_for_function("violations.length > 0")
    assert page.evaluate("window.inline") is None
    assert any("Content Security Policy" in text for text in console)

    console.clear()
    with page.expect_response(f"{server.url}/beacon.js") as script:
        page.goto(f"{site.origin}/csp")
    page.wait_for_function(LOADED)
    assert script.value.headers["content-encoding"] == "br"  # Chromium asks for it, and runs what it decoded
    page.evaluate("beacon('event', 'Search', {props: {results: 12}})")
    assert page.evaluate("violations") == []
    page.close(run_before_unload=True)
    assert not [text for text in console if "Content Security Policy" in text]

    expected = [
        expect("Queued", "/csp", {"early": "true"}),
        expect("pageview", "/csp"),
        expect("Search", "/csp", {"results": "12"}),
        expect("engagement", "/csp"),
    ]
    rows = rows_when(server, ROWS.format(site="csp.test"), lambda rows: len(rows) >= len(expected))
    assert sorted(map(stored, rows)) == sorted(expected)
    context.close()


def test_without_send_beacon_fetch_retries_once_after_retry_after(browser, deployment):
    server, site = deployment
    context = browser.new_context(user_agent=DESKTOP_UA)
    context.add_init_script("delete Navigator.prototype.sendBeacon")
    page = context.new_page()
    page.goto(f"{site.origin}/retry")  # its data-api is the site's /flaky: 503 + Retry-After: 1 to page views

    def pageviews() -> list:
        return [p for p in site.flaky_posts if p.body.get("type", "pageview") == "pageview"]

    wait_for(lambda: len(pageviews()) >= 2, 15, "the page view and its retry", every=0.05)
    # A later beacon, sent well after a second retry would have come, marks the end.
    page.evaluate("setTimeout(() => beacon('event', 'Marker'), 1500)")
    wait_for(lambda: any(p.body.get("name") == "Marker" for p in site.flaky_posts), 15, "the marker", every=0.05)
    assert len(pageviews()) == 2, pageviews()  # exactly one retry
    first, retry = pageviews()
    assert first.body == retry.body and first.body["url"] == f"{site.origin}/retry"
    assert retry.at - first.at >= 0.9  # it waited for Retry-After
    context.close()


def test_a_local_page_without_allow_local_says_once_why_nothing_is_sent(browser, deployment):
    server, site = deployment
    context = browser.new_context(user_agent=DESKTOP_UA)
    sent = collected(context, server.url)
    page = context.new_page()
    said: list[tuple[str, str]] = []
    page.on("console", lambda m: said.append((m.type, m.text)) if m.type != "error" else None)  # not the favicon's 404
    page.goto(f"{site.origin}/local")
    page.wait_for_function(LOADED)
    page.evaluate("beacon('event', 'Local'); history.pushState({}, '', '/local/next')")
    page.goto(f"{site.origin}/")  # data-allow-local: sends, and says nothing
    page.wait_for_function(LOADED)
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:  # the page view of "/"
        page.wait_for_timeout(100)
    context.close()
    assert said == [
        ("info", "beacon: not counted on a local or automated page (add data-allow-local to the script tag)")
    ]
    assert sent and {urlsplit(b["url"]).path for b in sent} == {"/"}  # nothing from /local
