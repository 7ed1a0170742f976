"""The dashboard of sites in their own time zones (issue 24), in real headless Chromium
whose own zone is another one (Asia/Tokyo) against a real ``beacon serve``: "today",
"yesterday", the period's dates, the date picker and the realtime clock are the site's;
the day view labels the site's local hours, 25 on the day the clock goes back (the
repeated hour told apart by its offset) and 23 on the day it jumps; and a site whose
zone changed says which figures keep the previous zone's cut. Every expected date,
label and sum is worked out here with zoneinfo. Screenshots at 1280 and 375 px."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as day_time
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser.browsing import DESKTOP_UA, sign_in_with_token
from tests.browser.dashboard_fixtures import Visit, events_of, insert
from tests.browser.test_dashboard import axe_source
from tests.server import BeaconServer, cli

SITE, MOVED = "toronto.example", "moved.example"
ZONE, MOVED_ZONE, BROWSER_ZONE = "America/Toronto", "Europe/Paris", "Asia/Tokyo"
TORONTO = ZoneInfo(ZONE)
__all__ = ["axe_source"]  # the fixture, imported for this module
EVE_VISITORS = {1: 1, 2: 3}  # the day before the fall: its 01:00 and 02:00, which the long day is compared with
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --- the site's days, in plain Python -------------------------------------------------


def start_of(day: date) -> datetime:
    """The UTC instant a Toronto day starts (its midnight always exists: DST moves 2 am)."""
    return datetime.combine(day, day_time(), TORONTO).astimezone(timezone.utc)


def hours_long(day: date) -> float:
    return (start_of(day + timedelta(days=1)) - start_of(day)).total_seconds() / 3600


def toronto_today() -> date:
    return datetime.now(TORONTO).date()


def last_day_of(hours: int) -> date:
    """The latest Toronto day before today that is ``hours`` long (23: spring, 25: fall)."""
    day = toronto_today() - timedelta(days=1)
    while hours_long(day) != hours:
        day -= timedelta(days=1)
    return day


def hour_slots(day: date) -> list[tuple[datetime, str]]:
    """Each hour of the Toronto ``day``: its UTC start and its label as the page shows it
    ("01:00", and "01:00 UTC−04:00" / "01:00 UTC−05:00" for an hour lived twice)."""
    starts = [start_of(day) + timedelta(hours=i) for i in range(round(hours_long(day)))]
    walls = [s.astimezone(TORONTO).strftime("%H:00") for s in starts]
    labels = []
    for at, wall in zip(starts, walls):
        offset = at.astimezone(TORONTO).strftime("%z")
        labels.append(
            f"{wall} UTC{offset[0].replace('-', '−')}{offset[1:3]}:{offset[3:]}" if walls.count(wall) > 1 else wall
        )
    return list(zip(starts, labels))


def visitors_in(hour: int) -> int:
    """The traffic of a DST day: 1, 2 or 3 visitors in each of its hours."""
    return 1 + hour % 3


def shown_day(day: date, with_year: bool = True) -> str:
    return f"{MONTHS[day.month - 1]} {day.day}" + (f", {day.year}" if with_year else "")


# --- the server ---------------------------------------------------------------------


@dataclass
class Zoned:
    server: BeaconServer
    analyst: str
    fall: date  # the last day the clock went back: 25 hours
    spring: date  # the last day it jumped: 23 hours

    @property
    def url(self) -> str:
        return f"{self.server.url}/dashboard"

    def api(self, kind: str, **params) -> dict:
        r = httpx.get(
            f"{self.server.url}/api/v1/stats/{kind}",
            params=params,
            headers={"Authorization": f"Bearer {self.analyst}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()


def dst_day_visits(day: date, first_visitor: int) -> list[Visit]:
    """Visitors in every hour of ``day``, each on one page 10 minutes into the hour, and
    one at 23:50 the evening before (a UTC day's, not this local day's)."""
    visits = []
    for hour, (at, _) in enumerate(hour_slots(day)):
        for n in range(visitors_in(hour)):
            visits.append(
                Visit(
                    first_visitor + 10 * hour + n,
                    at + timedelta(minutes=10 + n),
                    ("/",),
                    "",
                    ("CA", "Toronto"),
                    ("desktop", "Chrome", "Linux"),
                    "en-CA",
                    False,
                )
            )
    visits.append(
        Visit(
            first_visitor + 9999,
            start_of(day) - timedelta(minutes=10),
            ("/",),
            "",
            ("CA", "Toronto"),
            ("desktop", "Chrome", "Linux"),
            "en-CA",
            False,
        )
    )
    return visits


def eve_visits(day: date, first_visitor: int) -> list[Visit]:
    """The day before the clock goes back: EVE_VISITORS[hour] visitors at 10 past those hours."""
    at = [
        start_of(day) + timedelta(hours=hour, minutes=10 + n)
        for hour, count in EVE_VISITORS.items()
        for n in range(count)
    ]
    return [
        Visit(first_visitor + i, moment, ("/",), "", ("CA", "Toronto"), ("desktop", "Chrome", "Linux"), "en-CA", False)
        for i, moment in enumerate(at)
    ]


def wait_for_visits(zoned: Zoned, day: date, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (
        zoned.api("aggregate", site_id=SITE, period="day", date=day.isoformat(), metrics="visits")["results"]["visits"][
            "value"
        ]
        != count
    ):
        assert time.monotonic() < deadline, f"the visits of {day} not built in {timeout}s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def zoned(tmp_path_factory) -> Zoned:
    data_dir = tmp_path_factory.mktemp("zones") / "data"
    with BeaconServer(data_dir) as server:
        cli("sites", "add", SITE, "--timezone", ZONE, "--data-dir", str(data_dir))
        cli("sites", "add", MOVED, "--data-dir", str(data_dir))
        cli("sites", "set", MOVED, "--timezone", MOVED_ZONE, "--data-dir", str(data_dir))
        analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
        running = Zoned(server, analyst, last_day_of(25), last_day_of(23))
        eve = running.fall - timedelta(days=1)
        insert(
            data_dir,
            events_of(
                dst_day_visits(running.fall, 100_000)
                + dst_day_visits(running.spring, 200_000)
                + eve_visits(eve, 300_000),
                SITE,
            ),
        )
        for day in (running.fall, running.spring):
            wait_for_visits(running, day, sum(visitors_in(h) for h in range(round(hours_long(day)))))
        wait_for_visits(running, eve, sum(EVE_VISITORS.values()) + 1)  # and the one at 23:50
        yield running


# --- the page -----------------------------------------------------------------------


def ready(page, renders: int = 1) -> None:
    page.wait_for_function(
        f"() => Number(document.querySelector('main')?.dataset.renders) >= {renders} "
        "&& document.querySelector('main').dataset.state === 'ready'",
        timeout=30000,
    )


class Watched:
    def __init__(self, context, page):
        self.context, self.page = context, page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def stats_dates(self, start: int = 0) -> set[tuple[str, str]]:
        """The (period, date) of every Stats API call of a view since request ``start``."""
        asked = [parse_qs(urlsplit(u).query) for u in self.requests[start:] if "/api/v1/stats/" in u]
        return {(q["period"][0], q.get("date", [""])[0]) for q in asked if "period" in q}


@pytest.fixture
def open_dashboard(browser, zoned):
    """The dashboard signed in, in a browser whose zone is Tokyo's; ``at``: the instant
    the browser's clock says it is (Playwright's clock), else the real one."""
    opened: list[Watched] = []

    def open_at(query: str, at: datetime | None = None, **options) -> Watched:
        context = browser.new_context(user_agent=DESKTOP_UA, timezone_id=BROWSER_ZONE, **options)
        watched = Watched(context, context.new_page())
        opened.append(watched)
        if at is not None:
            watched.page.clock.set_fixed_time(at)
        watched.page.goto(f"{zoned.url}?{query}")
        sign_in_with_token(watched.page, zoned.analyst)
        ready(watched.page)
        return watched

    yield open_at
    for watched in opened:
        assert watched.errors == []
        watched.context.close()


def chart_labels(page) -> list[str]:
    return page.locator(".chart").get_attribute("data-x-labels").split("|")


def chart_summary(page) -> str:
    return page.locator(".chart").get_attribute("aria-label")


# --- the tests ------------------------------------------------------------------------


def test_today_is_the_sites_date_not_the_browsers_nor_utcs(open_dashboard, zoned):
    before = toronto_today()
    watched = open_dashboard(f"site={SITE}&period=day")
    after = toronto_today()
    page = watched.page
    asked = watched.stats_dates()
    assert asked and asked <= {("day", before.isoformat()), ("day", after.isoformat())}, asked
    assert page.locator(".range").inner_text() in {shown_day(before), shown_day(after)}
    assert page.locator(".period-select option:checked").inner_text() == "Today"
    assert page.locator("#to").get_attribute("max") in {before.isoformat(), after.isoformat()}
    offset = datetime.now(TORONTO).strftime("%z")
    assert page.locator(".zone").inner_text() == f"Times in {ZONE} (UTC−{offset[1:3]}:{offset[3:]})"
    assert page.locator(".notice.zone-change").is_hidden()  # its zone never changed


def test_at_8_pm_in_toronto_on_the_day_the_clock_goes_back(open_dashboard, zoned, artefacts):
    """The browser's clock at 20:00 in Toronto, 01:00 UTC and 10:00 in Tokyo the next day:
    "today" is the Toronto day of 25 hours, of which the last three are still to come."""
    now = start_of(zoned.fall) + timedelta(hours=21)  # 25 hours long: 21 hours after midnight is 20:00
    assert now.astimezone(TORONTO).hour == 20 and now.date() == now.astimezone(
        ZoneInfo(BROWSER_ZONE)
    ).date() == zoned.fall + timedelta(days=1)
    watched = open_dashboard(f"site={SITE}&period=day", at=now, viewport={"width": 1280, "height": 900})
    page = watched.page
    assert watched.stats_dates() == {("day", zoned.fall.isoformat())}
    assert page.locator(".range").inner_text() == shown_day(zoned.fall)
    assert page.locator(".period-select option:checked").inner_text() == "Today"
    assert page.locator(".zone").inner_text() == f"Times in {ZONE} (UTC−05:00)"
    page.wait_for_function("() => document.querySelector('.realtime-clock').textContent === ' · 20:00'")

    slots = hour_slots(zoned.fall)
    assert chart_labels(page) == [label for _, label in slots]
    assert len(slots) == 25 and "01:00 UTC−04:00" in chart_labels(page) and "01:00 UTC−05:00" in chart_labels(page)
    past = [hour for hour, (at, _) in enumerate(slots) if at <= now]  # hours 21, 22 and 23 are still to come
    assert chart_summary(page) == f"Unique visitors per hour, {len(past)} points, sum {sum(map(visitors_in, past))}"
    page.screenshot(path=artefacts / "dashboard-zone-fall-back-1280.png", full_page=True)

    start = len(watched.requests)
    page.click("button[aria-label='Previous period']")
    ready(page, 2)
    yesterday = zoned.fall - timedelta(days=1)
    assert watched.stats_dates(start) == {("day", yesterday.isoformat())}
    assert page.locator(".period-select option:checked").inner_text() == "Yesterday"
    assert chart_labels(page) == [label for _, label in hour_slots(yesterday)]  # a day of 24 hours


def test_the_day_view_draws_25_hours_in_the_fall_and_23_in_the_spring(open_dashboard, zoned, artefacts):
    for day, width in ((zoned.fall, 375), (zoned.spring, 1280)):
        page = open_dashboard(f"site={SITE}&period=day&date={day}", viewport={"width": width, "height": 900}).page
        slots = hour_slots(day)
        assert chart_labels(page) == [label for _, label in slots]
        total = sum(visitors_in(hour) for hour in range(len(slots)))  # not the visitor at 23:50 the day before
        assert chart_summary(page) == f"Unique visitors per hour, {len(slots)} points, sum {total}"
        assert zoned.api("timeseries", site_id=SITE, period="day", date=day.isoformat())["results"][0]["visitors"] == 1
        assert page.locator('.tile[data-metric="visitors"] .tile-value').inner_text() == f"{total:,}"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        page.screenshot(path=artefacts / f"dashboard-zone-{len(slots)}-hours-{width}.png", full_page=True)
    assert "02:00" not in chart_labels(page)  # the spring day: 2 am never came


def test_a_site_that_moved_says_which_figures_keep_the_previous_zones_cut(open_dashboard, zoned, artefacts, axe_source):
    session = httpx.post(f"{zoned.url}/session", json={"token": zoned.analyst}, headers={"Origin": zoned.server.url})
    since = datetime.fromisoformat(session.json()["zones"][MOVED]["zone_since"])
    first_day = since.astimezone(ZoneInfo(MOVED_ZONE)).date()  # the first day cut in Paris
    before = f"{first_day - timedelta(days=1)},{first_day}"
    for width in (1280, 375):
        page = open_dashboard(
            f"site={MOVED}&period=custom&date={before}", viewport={"width": width, "height": 900}
        ).page
        note = page.locator(".notice.zone-change")
        assert note.is_visible()
        assert note.inner_text().startswith(f"Figures before {shown_day(first_day)} are cut in the previous time zone")
        assert MOVED_ZONE in note.inner_text() and "raw events" in note.inner_text()
        assert page.locator(".zone").inner_text().startswith(f"Times in {MOVED_ZONE} (UTC+0")
        page.screenshot(path=artefacts / f"dashboard-zone-moved-{width}.png", full_page=True)
    page.evaluate(axe_source)  # the note and the zone's line, in the light scheme and the dark
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        assert [(v["id"], v["impact"]) for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    page = open_dashboard(f"site={MOVED}&period=custom&date={first_day},{first_day}").page
    assert page.locator(".notice.zone-change").is_hidden()  # all of it in the new zone
    page.select_option("#site", SITE)
    ready(page, 2)
    assert page.locator(".zone").inner_text().startswith(f"Times in {ZONE} (UTC−0")
    assert page.locator(".notice.zone-change").is_hidden()


def legend_at(page, index: int, points: int) -> list[str]:
    """The chart's legend with the cursor on point ``index``: the hour, then each series' value."""
    box = page.locator(".chart .u-over").bounding_box()
    x = min(box["width"] * index / (points - 1), box["width"] - 1)  # the last point is on the area's edge
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    return page.locator(".chart .u-legend .u-series .u-value").all_inner_texts()


def test_comparing_the_long_day_puts_each_hour_over_the_same_hour_of_the_day_before(open_dashboard, zoned):
    page = open_dashboard(
        f"site={SITE}&period=day&date={zoned.fall}&compare=1", viewport={"width": 1280, "height": 900}
    ).page
    slots = hour_slots(zoned.fall)
    eve = {**EVE_VISITORS, 23: 1}  # and the visitor at 23:50
    for index, (at, label) in enumerate(slots):
        wall = at.astimezone(TORONTO).hour
        assert legend_at(page, index, len(slots)) == [label, str(visitors_in(index)), str(eve.get(wall, 0))], label
