"""time_on_page and scroll_depth (issue 25): pages with several engagement events per
visitor and day, pages without engagement, scroll depths over 100, engagement with
only a time or only a depth. The expected values are computed here in plain Python
from the generated events (docs/analytics.md: per page, each visitor-day with
engagement counts once), on both paths: rolled-up days and raw events."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

import queries
from queries.model import Filter, QueryError, StatsQuery
from queries.planner import make_plan
from rollups.daily import roll_up_day
from rollups.visit_builder import build_closed_visits
from rollups.zones import zone_groups
from tests.traffic import Event, clean, insert

SITE = "a.test"
PAGES = ("/", "/pricing", "/blog/a", "/docs")
ENGAGED_PAGES = ("/", "/pricing", "/blog/a")  # /docs is viewed, never engaged with
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
BOTH = ("time_on_page", "scroll_depth")


class Traffic:
    def __init__(self, events: list[Event], first: datetime, now: datetime):
        self.events = events
        self.first = first
        self.now = now


def _generated(rng: random.Random, first: datetime, days: int) -> list[Event]:
    events = []
    for day in range(days):
        for _ in range(40):
            visitor = rng.getrandbits(63) | 1
            at = first + day * DAY + timedelta(seconds=rng.uniform(600, 20 * 3600))
            for _ in range(rng.choice((1, 2, 4))):
                page = rng.choice(PAGES)
                events.append(Event(SITE, visitor, at, path=page))
                if page in ENGAGED_PAGES:
                    for _ in range(rng.choice((0, 1, 1, 2, 3))):  # several engagements of one page view
                        at += timedelta(seconds=rng.uniform(1, 300))
                        events.append(Event(SITE, visitor, at, "event", "engagement", page, props=_engagement(rng)))
                at += timedelta(seconds=rng.uniform(5, 1200))
    events.append(Event("b.test", 7, first + HOUR, "event", "engagement", "/", props={"engaged_ms": "999999"}))
    return events


def _engagement(rng: random.Random) -> dict[str, str]:
    kind = rng.random()
    props = {}
    if kind < 0.85:
        props["engaged_ms"] = str(rng.randint(0, 400_000))
    if kind > 0.15:
        props["scroll_depth"] = str(rng.choice((0, 10, 35, 70, 100, 120, 255)))  # stored uncapped: capped on read
    return props


@pytest.fixture(scope="module")
def traffic(store) -> Traffic:
    """Four whole days and a morning, built at noon of the fifth: four days rolled up,
    the morning from the raw events on both paths."""
    clean(store)
    rng = random.Random(25)
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - 10 * DAY
    now = first + 4 * DAY + 12 * HOUR
    events = [e for e in _generated(rng, first, 5) if e.ts < now]
    insert(store, events)
    build_closed_visits(store, now)
    yield Traffic(events, first, now)
    clean(store)


# --- the oracle ----------------------------------------------------------------------------


def expected(events: list[Event], start: datetime, end: datetime, pages=None, by=None) -> dict:
    """Per page (``by``: None for all of them together), time_on_page and scroll_depth."""
    per_key: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: {"ms": [], "sd": []})
    for e in events:
        if e.site != SITE or e.name != "engagement" or not start <= e.ts < end:
            continue
        if pages is not None and e.path not in pages:
            continue
        key = (e.path if by else "", e.visitor_id, e.ts.date(), e.path)
        if "engaged_ms" in e.props:
            per_key[key]["ms"].append(int(e.props["engaged_ms"]))
        if "scroll_depth" in e.props:
            per_key[key]["sd"].append(min(int(e.props["scroll_depth"]), 100))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"ms": 0, "timed": 0, "sd": 0, "scrolled": 0})
    for (row, *_), found in per_key.items():
        if found["ms"]:
            totals[row]["ms"] += sum(found["ms"])
            totals[row]["timed"] += 1
        if found["sd"]:
            totals[row]["sd"] += max(found["sd"])
            totals[row]["scrolled"] += 1
    return {
        row: {
            "time_on_page": _mean(t["ms"], t["timed"] * 1000),
            "scroll_depth": _mean(t["sd"], t["scrolled"]),
        }
        for row, t in totals.items()
    }


def _mean(total: int, count: int) -> int | None:
    if not count:
        return None
    return int((Decimal(total) / Decimal(count)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def both(kind, store, query: StatsQuery):
    aggregated = kind(store, StatsQuery(**{**query.__dict__, "source": "aggregates"}))
    raw = kind(store, StatsQuery(**{**query.__dict__, "source": "events"}))
    assert aggregated == raw
    return aggregated


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("days", [(0, 4), (1, 3), (2, 5)], ids=["rolled days", "some rolled days", "with today"])
def test_page_breakdown_equals_the_generated_answer(store, traffic, days):
    start, end = traffic.first + days[0] * DAY, min(traffic.first + days[1] * DAY, traffic.now)
    query = StatsQuery(SITE, start, end, ("visitors", *BOTH), property="event:page")
    rows = both(queries.breakdown, store, query)
    want = expected(traffic.events, start, end, by="page")
    got = {r["page"]: {m: r[m] for m in BOTH} for r in rows}
    assert {p: got[p] for p in want} == want
    assert want and set(want) == set(ENGAGED_PAGES)
    assert got["/docs"] == {"time_on_page": None, "scroll_depth": None}  # viewed, never engaged with


def test_aggregate_under_a_page_filter(store, traffic):
    start, end = traffic.first, traffic.now
    for pages in (("/pricing",), ("/", "/blog/a"), ("/docs",)):
        query = StatsQuery(SITE, start, end, BOTH, (Filter("event:page", "==", pages),))
        want = expected(traffic.events, start, end, pages=pages).get("", {"time_on_page": None, "scroll_depth": None})
        assert both(queries.aggregate, store, query) == want


def test_breakdown_sorted_by_time_on_page(store, traffic):
    start, end = traffic.first, traffic.first + 4 * DAY
    query = StatsQuery(SITE, start, end, ("time_on_page",), property="event:page")
    rows = both(queries.breakdown, store, query)
    want = expected(traffic.events, start, end, by="page")
    assert [r["page"] for r in rows] == sorted(want, key=lambda p: -want[p]["time_on_page"])


def test_timeseries_by_day_under_a_page_filter(store, traffic):
    start, end = traffic.first, traffic.now
    pages = ("/", "/pricing")
    query = StatsQuery(SITE, start, end, BOTH, (Filter("event:page", "==", pages),), interval="date")
    series = both(queries.timeseries, store, query)
    for point in series:
        day = datetime.fromisoformat(point["date"]).replace(tzinfo=timezone.utc)
        want = expected(traffic.events, day, min(day + DAY, end), pages=pages).get("", dict.fromkeys(BOTH))
        assert {m: point[m] for m in BOTH} == want


def test_days_rolled_up_before_engagement_are_read_from_the_events(store, traffic):
    """A store upgraded in place: its days rolled up before migration 0018 have no
    engagement rows and are listed without them; the aggregates path reads them raw."""
    start, end = traffic.first, traffic.first + 4 * DAY
    query = StatsQuery(SITE, start, end, BOTH, property="event:page", source="aggregates")
    want = queries.breakdown(store, query)
    store.command("ALTER TABLE beacon.stats_daily DELETE WHERE dim = 'engagement:page' SETTINGS mutations_sync = 2")
    store.command(
        "INSERT INTO beacon.stats_days (day, zone, rows, engagement) "
        "SELECT day, zone, rows, 0 FROM beacon.stats_days FINAL"
    )
    try:
        assert queries.breakdown(store, query) == want
    finally:  # rolled up again, with their engagement rows, for the tests after
        group = zone_groups(store)[0]
        for day in range(4):
            roll_up_day(store, (traffic.first + day * DAY).date(), group)


@pytest.mark.parametrize(
    "filters, prop, message",
    [
        ((), None, "can only be queried with event:page filters or dimensions"),
        ((), "visit:source", "can only be queried with event:page filters or dimensions"),
        ((Filter("event:page", "==", ("/",)),), "visit:source", "a breakdown by event:page"),
        ((Filter("visit:source", "==", ("google",)),), "event:page", "filters on event:page"),
    ],
)
def test_refused_as_plausible_refuses(store, traffic, filters, prop, message):
    kind = queries.breakdown if prop else queries.aggregate
    for metric in BOTH:
        with pytest.raises(QueryError, match=message):
            kind(store, StatsQuery(SITE, traffic.first, traffic.now, (metric,), filters, property=prop))


def test_the_plan_says_where_engagement_is_read(traffic):
    by_page = StatsQuery(SITE, traffic.first, traffic.first + 4 * DAY, BOTH, property="event:page")
    assert make_plan(by_page).describe()["engagement"] == "beacon.stats_daily: engagement:page"
    hourly = StatsQuery(SITE, traffic.first, traffic.first + DAY, BOTH, (Filter("event:page", "==", ("/",)),))
    assert make_plan(replace(hourly, interval="hour")).describe()["engagement"] == "engagement events"
    assert make_plan(replace(by_page, metrics=("visitors",))).describe()["engagement"] is None
