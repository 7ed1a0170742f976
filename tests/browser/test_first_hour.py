"""A newcomer's first hour (issue 26): a fresh ``beacon serve`` whose only visits are
today's, as after the README's first steps, seen in real headless Chromium. The
dashboard opens on today, offers today from a period that ends yesterday, and says
why the map and the goals are empty; counts read as whole numbers, and hours still
to come are no data. Screenshots at 1280 and 375 px go to the artefacts directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.server import BeaconServer, cli

SITE = "first.test"
GOAL = "Signup"
PAGES = ("/", "/pricing", "/docs")  # one visitor's visit, today


@dataclass
class FreshServer:
    server: BeaconServer
    analyst: str

    def api(self, kind: str, **params) -> dict:
        r = httpx.get(
            f"{self.server.url}/api/v1/stats/{kind}",
            params={"site_id": SITE, **params},
            headers={"Authorization": f"Bearer {self.analyst}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> FreshServer:
    data_dir = tmp_path_factory.mktemp("first-hour") / "data"
    with BeaconServer(data_dir) as server:
        cli("sites", "add", SITE, "--data-dir", str(data_dir))
        cli("goals", "add", SITE, "--event", GOAL, "--data-dir", str(data_dir))  # set up, never reached
        analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
        for page in PAGES:
            beacon = {"site": SITE, "url": f"https://{SITE}{page}", "referrer": "https://www.google.com/"}
            r = httpx.post(f"{server.url}/collect", json=beacon, headers={"User-Agent": DESKTOP_UA})
            assert r.status_code == 202, r.text
        running = FreshServer(server, analyst)
        deadline = time.monotonic() + 30
        while running.api("aggregate", period="day", metrics="pageviews")["results"]["pageviews"]["value"] < len(PAGES):
            assert time.monotonic() < deadline, "today's beacons not counted in 30 s"
            time.sleep(0.2)
        yield running


def ready(page, renders: int = 1) -> None:
    page.wait_for_function(
        f"() => Number(document.querySelector('main')?.dataset.renders) >= {renders} "
        "&& document.querySelector('main').dataset.state === 'ready'",
        timeout=30000,
    )


@pytest.fixture
def open_dashboard(browser, fresh):
    contexts = []

    def open_at(query: str = "", **options):
        context = browser.new_context(user_agent=DESKTOP_UA, **options)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{fresh.server.url}/dashboard{'?' + query if query else ''}")
        sign_in_with_token(page, fresh.analyst)
        ready(page)
        page.errors = errors
        return page

    yield open_at
    for context in contexts:
        for page in context.pages:
            assert page.errors == []
        context.close()


def tile(page, metric: str) -> str:
    return page.locator(f'.tile[data-metric="{metric}"] .tile-value').inner_text()


def hour_buckets_so_far() -> set[int]:
    """How many hours of today have begun (the answer may change while a test runs)."""
    return {datetime.now(timezone.utc).hour + 1}


def test_the_first_visit_opens_on_today_with_the_visitors_own_numbers(open_dashboard, fresh, artefacts):
    before, before_clock = hour_buckets_so_far(), datetime.now(timezone.utc).strftime("%H:%M")
    page = open_dashboard()  # no period in the URL: a first visit
    page.wait_for_function("() => new URLSearchParams(location.search).get('period') === 'day'")
    ready(page)
    assert page.locator(".period-select").input_value() == "day"
    today = fresh.api("aggregate", period="day", metrics="visitors,pageviews")["results"]
    assert (tile(page, "visitors"), tile(page, "pageviews")) == ("1", str(len(PAGES)))
    assert (today["visitors"]["value"], today["pageviews"]["value"]) == (1, len(PAGES))
    assert page.locator(".notice.install").is_hidden()
    last_30_days = fresh.api("aggregate", period="30d", metrics="visitors")["results"]["visitors"]["value"]
    assert last_30_days == 0  # Plausible's 30d ends yesterday

    # The header: one visitor, in the singular.
    page.wait_for_function("() => document.querySelector('.realtime-count').textContent === '1'", timeout=20000)
    words, clock = page.locator(".realtime").inner_text().strip().split(" · ")
    assert words == "1 current visitor"
    assert clock in {before_clock, datetime.now(timezone.utc).strftime("%H:%M")}  # the site's time: it is in UTC

    # The chart: hours still to come are no data, not zeros; the axis counts in whole numbers.
    label = page.locator(".chart").get_attribute("aria-label")
    assert label in {f"Unique visitors per hour, {n} points, sum 1" for n in before | hour_buckets_so_far()}, label
    y_labels = page.locator(".chart").get_attribute("data-y-labels").split()
    assert y_labels == [str(n) for n in range(len(y_labels))] and "1" in y_labels, y_labels  # 0 1, never 0 0 1 1

    # Locations without a GeoIP database say so; goals that exist call for no set-up advice.
    geoip = page.locator('[data-panel="locations"] .notice.geoip')
    assert geoip.is_visible() and "--geoip" in geoip.inner_text() and "Location (GeoIP)" in geoip.inner_text()
    goals = page.locator('[data-panel="conversions"] .notice.empty').inner_text()
    assert goals == f"No goal reached in this period (goals of {SITE}: {GOAL})."
    assert "beacon goals add" not in goals

    page.screenshot(path=artefacts / "first-hour-1280.png", full_page=True)


def test_a_period_ending_yesterday_offers_today(open_dashboard, fresh):
    page = open_dashboard("period=30d")  # chosen: the page keeps it
    hint = page.locator(".notice.install")
    assert hint.is_visible()
    assert "Today: 1 visitor." in hint.inner_text() and "<script" not in hint.inner_text()
    assert tile(page, "visitors") == "0"
    page.click(".notice.install button.show-today")
    ready(page, 2)
    assert parse_qs(urlsplit(page.url).query)["period"] == ["day"]
    assert tile(page, "visitors") == "1" and hint.is_hidden()


def test_at_375_px_nothing_is_cut(open_dashboard, artefacts):
    page = open_dashboard(viewport={"width": 375, "height": 812})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    words = page.locator(".realtime").inner_text().strip().split(" · ")[0]  # then the site's time
    assert words in {"1 current visitor", "– current visitors"}
    page.screenshot(path=artefacts / "first-hour-375.png", full_page=True)
