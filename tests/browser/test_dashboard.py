"""The dashboard in real headless Chromium against a real ``beacon serve`` holding
known traffic (tests/browser/dashboard_fixtures.py): sign-in, the numbers on screen
against the Stats API's and against the traffic itself, periods, filters through a
click, the URL as the whole state, sign-out, CSV export, the realtime count, empty
states, 375 px and dark mode, axe-core, and no Content-Security-Policy violation."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.browser.dashboard_fixtures import OTHER_SITE, SITE, Dashboard, dashboard, expected, period_days, today
from tests.tools import require_tool

__all__ = ["dashboard"]  # the fixture, imported for this module

FRONTEND = Path(__file__).resolve().parents[2] / "dashboard" / "frontend"
HEADLINE = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
PANEL_PROPERTIES = {"event:page", "visit:source", "visit:country", "visit:device", "visit:language", "event:goal"}
PAGE_METRICS = ("visitors", "pageviews", "time_on_page", "scroll_depth")  # the Top pages view, unfiltered


# --- what the page shows, in Python --------------------------------------------------


def shown(metric: str, value) -> str:
    """The page's formatting (dashboard/frontend/src/metrics.js) of an API value."""
    if value is None:
        return "—"
    if metric == "views_per_visit":
        return f"{value:,.2f}"
    if metric in ("bounce_rate", "scroll_depth"):
        return f"{round(value):,}%"
    if metric == "conversion_rate":
        return f"{value:.1f}%"
    if metric in ("visit_duration", "time_on_page"):
        total = round(value)
        h, m, s = total // 3600, total % 3600 // 60, total % 60
        return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
    return f"{round(value):,}"


def tiles(page) -> dict[str, str]:
    return {t.get_attribute("data-metric"): t.locator(".tile-value").inner_text() for t in page.locator(".tile").all()}


def api_tiles(dashboard: Dashboard, metrics: tuple[str, ...] = HEADLINE, **params) -> dict[str, str]:
    r = dashboard.api("aggregate", site_id=SITE, metrics=",".join(metrics), compare="previous_period", **params)
    assert r.status_code == 200, r.text
    return {m: shown(m, v["value"]) for m, v in r.json()["results"].items()}


def panel_rows(page, panel: str) -> list[tuple[str, ...]]:
    """The rows of a panel's table: the raw value, then each number as shown."""
    rows = []
    for row in page.locator(f'[data-panel="{panel}"] table.rows tbody tr').all():
        rows.append((row.get_attribute("data-value"), *(c.inner_text() for c in row.locator("td.num").all())))
    return rows


def api_rows(
    dashboard: Dashboard, prop: str, metrics: tuple[str, ...], limit: int = 10, **params
) -> list[tuple[str, ...]]:
    r = dashboard.api("breakdown", site_id=SITE, property=prop, metrics=",".join(metrics), limit=limit, **params)
    assert r.status_code == 200, r.text
    key = prop.split(":")[-1]
    return [(row[key], *(shown(m, row[m]) for m in metrics)) for row in r.json()["results"]]


def ready(page, renders: int = 1) -> None:
    """Wait until the page has drawn every panel ``renders`` times in all."""
    page.wait_for_function(
        f"() => Number(document.querySelector('main')?.dataset.renders) >= {renders} "
        "&& document.querySelector('main').dataset.state === 'ready'",
        timeout=30000,
    )


def realtime_shows(page, text: str, timeout: float = 10) -> None:
    page.wait_for_function(
        f"() => document.querySelector('.realtime-count').textContent === '{text}'", timeout=timeout * 1000
    )


def renders(page) -> int:
    return int(page.locator("main").get_attribute("data-renders"))


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


class Watched:
    """A signed-in page, with what it asked and what the browser complained about."""

    def __init__(self, context, page):
        self.context, self.page = context, page
        self.requests: list[str] = []
        self.complaints: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.complaints.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: self.complaints.append(str(e)))

    def stats_requests_since(self, start: int) -> list[tuple[str, dict[str, list[str]]]]:
        return [
            (urlsplit(u).path.rsplit("/", 1)[-1], query_of(u)) for u in self.requests[start:] if "/api/v1/stats/" in u
        ]


@pytest.fixture
def open_dashboard(browser, dashboard):
    """Open the dashboard at a query string, signed in through the form."""
    opened: list[Watched] = []

    def open_at(query: str = f"site={SITE}&period=30d", **options) -> Watched:
        context = browser.new_context(user_agent=DESKTOP_UA, **options)
        watched = Watched(context, context.new_page())
        opened.append(watched)
        watched.page.goto(f"{dashboard.url}?{query}")
        sign_in_with_token(watched.page, dashboard.analyst)
        ready(watched.page)
        return watched

    yield open_at
    for watched in opened:
        assert watched.complaints == [], watched.complaints  # no CSP violation, no script error
        watched.context.close()


# --- the tests --------------------------------------------------------------------------


def test_sign_in_shows_the_apis_numbers_and_keeps_the_token_out_of_urls_and_storage(open_dashboard, dashboard):
    watched = open_dashboard()
    page = watched.page
    cookie = next(c for c in watched.context.cookies() if c["name"] == "beacon_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
    assert 6.9 * 86400 < cookie["expires"] - time.time() <= 7 * 86400
    assert all(dashboard.analyst not in url for url in watched.requests)
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert dashboard.analyst not in page.content()

    assert tiles(page) == api_tiles(dashboard, period="30d")
    assert page.locator(".zone").inner_text() == "Times in UTC"  # the sites' zone: none was given
    first, last = period_days("30d")
    truth = expected(dashboard.visits, first, last)
    assert {m: tiles(page)[m] for m in truth} == {m: shown(m, v) for m, v in truth.items()}
    assert panel_rows(page, "pages") == api_rows(dashboard, "event:page", PAGE_METRICS, period="30d")
    assert panel_rows(page, "conversions") == api_rows(
        dashboard, "event:goal", ("visitors", "events", "conversion_rate"), period="30d"
    )
    realtime_shows(page, "0")  # all the traffic is days old

    page.click('[data-panel="conversions"] button.view:has-text("Custom events")')
    page.wait_for_selector('[data-panel="conversions"][data-state="ready"] tr[data-value="Signup"]')
    assert page.locator('[data-panel="conversions"] th').first.text_content() == "Event"  # not the goals' table
    signups = [v for v in dashboard.visits if first <= v.start.date() <= last and v.signup]
    rate = round(100 * len({v.visitor for v in signups}) / truth["visitors"], 1)
    assert panel_rows(page, "conversions") == [
        (
            "Signup",
            shown("visitors", len({v.visitor for v in signups})),
            shown("events", len(signups)),
            shown("conversion_rate", rate),
        )
    ]


def test_every_period_shows_the_apis_numbers_and_steps_back_and_forth(open_dashboard, dashboard):
    page = open_dashboard().page
    shown_at = 1
    for period in ("day", "month", "6mo", "12mo", "7d"):
        page.select_option(".period-select", period)
        shown_at += 1
        ready(page, shown_at)
        assert query_of(page.url)["period"] == [period] and "date" not in query_of(page.url)
        assert tiles(page) == api_tiles(dashboard, period=period), period
    first, last = period_days("7d")
    assert tiles(page)["visitors"] == shown("visitors", expected(dashboard.visits, first, last)["visitors"])

    page.click("button[aria-label='Previous period']")
    ready(page, shown_at + 1)
    anchor = today() - timedelta(days=7)
    assert query_of(page.url)["date"] == [anchor.isoformat()]
    assert tiles(page) == api_tiles(dashboard, period="7d", date=anchor.isoformat())
    first, last = period_days("7d", anchor)
    assert tiles(page)["pageviews"] == shown("pageviews", expected(dashboard.visits, first, last)["pageviews"])
    page.click("button[aria-label='Next period']")
    ready(page, shown_at + 2)
    assert "date" not in query_of(page.url) and page.locator("button[aria-label='Next period']").is_disabled()

    first, last = today() - timedelta(days=40), today() - timedelta(days=20)
    page.select_option(".period-select", "custom")
    page.fill("#from", first.isoformat())
    page.fill("#to", last.isoformat())
    page.click("form.custom button[type=submit]")
    ready(page, shown_at + 3)
    assert query_of(page.url)["date"] == [f"{first},{last}"]
    assert tiles(page) == api_tiles(dashboard, period="custom", date=f"{first},{last}")
    assert tiles(page)["visits"] == shown("visits", expected(dashboard.visits, first, last)["visits"])


def test_a_clicked_page_filters_every_panel_and_the_url_and_a_reload_shows_the_same(open_dashboard, dashboard):
    watched = open_dashboard()
    page = watched.page
    before = len(watched.requests)
    page.click('[data-panel="pages"] tr[data-value="/pricing"] button.filter')
    ready(page, 2)

    assert query_of(page.url)["filters"] == ["event:page==/pricing"]
    assert page.locator(".chip").inner_text().startswith("Page is /pricing")
    asked = watched.stats_requests_since(before)
    assert {kind for kind, _ in asked} >= {"aggregate", "timeseries", "breakdown"}
    assert all(params.get("filters") == ["event:page==/pricing"] for kind, params in asked if kind != "visitors")
    assert {params["property"][0] for kind, params in asked if kind == "breakdown"} >= PANEL_PROPERTIES

    filtered = {"period": "30d", "filters": "event:page==/pricing"}
    view = (tiles(page), panel_rows(page, "sources"), panel_rows(page, "locations"), panel_rows(page, "devices"))
    page_metrics = tuple(m for m in HEADLINE if m != "views_per_visit")  # the API refuses it with a page filter
    assert view[0] == api_tiles(dashboard, page_metrics, **filtered)
    assert view[1] == api_rows(dashboard, "visit:source", ("visitors",), **filtered)
    assert view[2] == api_rows(dashboard, "visit:country", ("visitors",), **filtered)
    assert view[3] == api_rows(dashboard, "visit:device", ("visitors",), **filtered)
    first, last = period_days("30d")
    truth = expected(dashboard.visits, first, last, page="/pricing")
    assert view[0]["visitors"] == shown("visitors", truth["visitors"])
    assert view[0]["pageviews"] == shown("pageviews", truth["pageviews"])

    page.reload()
    ready(page)
    assert (
        tiles(page),
        panel_rows(page, "sources"),
        panel_rows(page, "locations"),
        panel_rows(page, "devices"),
    ) == view
    assert page.locator(".chip").count() == 1 and page.locator(".period-select").input_value() == "30d"

    page.click(".chip button")
    ready(page, 2)
    assert "filters" not in query_of(page.url) and tiles(page) == api_tiles(dashboard, period="30d")


def test_signing_out_ends_the_session_on_the_server(open_dashboard, dashboard):
    watched = open_dashboard()
    cookie = next(c for c in watched.context.cookies() if c["name"] == "beacon_session")["value"]
    with_cookie = {"Cookie": f"beacon_session={cookie}"}
    aggregate = f"{dashboard.server.url}/api/v1/stats/aggregate?site_id={SITE}"
    assert httpx.get(aggregate, headers=with_cookie).status_code == 200
    watched.page.click("button.sign-out")
    watched.page.wait_for_selector("form.sign-in")
    assert httpx.get(aggregate, headers=with_cookie).status_code == 401
    assert httpx.get(f"{dashboard.url}/session", headers=with_cookie).status_code == 401
    assert not [c for c in watched.context.cookies() if c["name"] == "beacon_session"]
    watched.page.goto(f"{dashboard.url}?site={SITE}")
    watched.page.wait_for_selector("form.sign-in")  # not let in again


def test_a_panel_exports_its_rows_as_csv(open_dashboard, dashboard):
    page = open_dashboard().page
    with page.expect_download() as download:
        page.click('[data-panel="pages"] button.export')
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    r = dashboard.api(
        "breakdown", site_id=SITE, period="30d", property="event:page", metrics=",".join(PAGE_METRICS), limit=1000
    )
    assert rows[0] == ["page", *PAGE_METRICS]
    in_csv = [
        [row["page"], *("" if row[m] is None else str(row[m]) for m in PAGE_METRICS)] for row in r.json()["results"]
    ]
    assert rows[1:] == in_csv
    assert any(row["time_on_page"] for row in r.json()["results"])  # the fixture's engagement is read
    assert download.value.suggested_filename.startswith(f"{SITE}-") and download.value.suggested_filename.endswith(
        "-page.csv"
    )


def test_a_site_without_visits_says_how_to_install_the_snippet(open_dashboard, dashboard):
    page = open_dashboard(f"site={OTHER_SITE}&period=day").page
    hint = page.locator(".notice.install")
    assert hint.is_visible()
    assert (
        f'<script defer data-site="{OTHER_SITE}" data-allow-local src="{dashboard.server.url}/beacon.js"></script>'
        in hint.inner_text()
    )  # a local dashboard: the tracker needs data-allow-local there
    assert page.locator('[data-panel="pages"] .notice.empty').is_visible()
    page.select_option("#site", SITE)
    ready(page, 2)
    assert query_of(page.url)["site"] == [SITE]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violation(open_dashboard, axe_source, scheme):
    page = open_dashboard(color_scheme=scheme).page
    page.evaluate(axe_source)  # through DevTools: the page's own CSP allows no injected script
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == []
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
    assert (sum(channels) < 150) == (scheme == "dark"), background


CUT_HEADERS = """() => [...document.querySelectorAll('table.rows th')].filter(th =>
    th.scrollWidth > th.clientWidth || th.getBoundingClientRect().right > th.closest('.panel').getBoundingClientRect().right
  ).map(th => th.textContent)"""


@pytest.mark.parametrize("width", [1280, 375])
def test_it_fits_the_screen_and_no_column_header_is_cut(open_dashboard, artefacts, width):
    page = open_dashboard(viewport={"width": width, "height": 900}).page
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    boxes = [page.locator(f'[data-panel="{p}"]').bounding_box() for p in ("pages", "sources")]
    if width == 375:
        assert boxes[1]["y"] > boxes[0]["y"] and boxes[0]["width"] <= 375  # one column
        # The site's name stays readable beside the account menu and Sign out (it was squeezed to its arrow).
        assert page.locator(".site-picker select").bounding_box()["width"] >= 110
    goals = page.locator('[data-panel="conversions"] th.num')
    assert goals.count() == 3 and goals.nth(2).get_attribute("title") == "Conversion rate"  # the full name, on hover
    assert page.evaluate(CUT_HEADERS) == []
    page.screenshot(path=artefacts / f"dashboard-{width}.png", full_page=True)


def test_the_realtime_count_refreshes_by_itself(open_dashboard, dashboard):
    page = open_dashboard().page
    realtime_shows(page, "0")
    shown_at = renders(page)
    beacon = {"site": SITE, "url": f"https://{SITE}/live", "referrer": ""}
    assert (
        httpx.post(f"{dashboard.server.url}/collect", json=beacon, headers={"User-Agent": DESKTOP_UA}).status_code
        == 202
    )
    realtime_shows(page, "1", timeout=20)  # it asks every 10 s
    assert renders(page) == shown_at  # no reload, no navigation: the count refreshed itself


# --- axe-core ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory) -> str:
    """axe-core at the version dashboard/frontend/package-lock.json pins."""
    installed = FRONTEND / "node_modules" / "axe-core" / "axe.min.js"
    if not installed.exists():
        require_tool("npm", "axe-core cannot be installed")
        work = tmp_path_factory.mktemp("axe")
        for name in ("package.json", "package-lock.json"):
            shutil.copy(FRONTEND / name, work / name)
        npm = subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert npm.returncode == 0, npm.stderr
        installed = work / "node_modules" / "axe-core" / "axe.min.js"
    return installed.read_text()
