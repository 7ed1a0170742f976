"""The stats queries on generated traffic: every number equals the one computed in
Python from the generated events (tests/traffic.py), on both paths: the aggregates
(rolled-up days, hourly totals, built and open visits) and the raw events."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

import queries
from queries.model import Filter, QueryError, StatsQuery
from queries.timeseries import buckets
from rollups.visit_builder import build_closed_visits
from storage.goals import add_goal, list_goals, remove_goal
from tests.traffic import Event, Oracle, batches, clean, insert, person_visit, random_traffic

ALL = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events")
NO_VPV = tuple(m for m in ALL if m != "views_per_visit")
EVENT_METRICS = ("visitors", "pageviews", "events")
SITE = "a.test"
GOALS = [("event", "Signup"), ("page", "/pricing"), ("event", "Play")]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class Traffic:
    def __init__(self, oracle: Oracle, first_day: datetime, now: datetime):
        self.oracle = oracle
        self.d = [first_day + i * DAY for i in range(5)]  # d[3] is today, d[4] tomorrow
        self.now = now


@pytest.fixture(scope="module")
def traffic(store) -> Traffic:
    """Three whole days and a morning of three sites, inserted in shuffled batches, and
    visits built at noon of the fourth day: those days rolled up, that morning built
    up to 11:20, and the visits of the last 40 minutes still open (the fixture checks
    there are some)."""
    clean(store)
    rng = random.Random(12)
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - 10 * DAY
    now = first + 3 * DAY + 12 * HOUR
    events = [e for day in range(3) for e in random_traffic(rng, first + day * DAY, people=25)]
    events += random_traffic(rng, first + 3 * DAY, people=25, until=now)
    events += random_traffic(rng, now - 2 * HOUR, people=8, until=now, span=(0, 2 * 3600))  # open at noon
    events += _scripted(rng, first)
    for e in events:  # a day without any props on one site: its "(none)" is the whole day
        if e.site == SITE and first + 2 * DAY <= e.ts < first + 3 * DAY:
            e.props = {}
    for batch in batches(rng, events, 7):
        insert(store, batch)
    for kind, value in GOALS:
        add_goal(store, SITE, kind, value)
    build_closed_visits(store, now)
    oracle = Oracle(events, GOALS)
    assert sum(v.last >= now - 40 * timedelta(minutes=1) for v in oracle.visits if v.site == SITE) >= 5
    yield Traffic(oracle, first, now)
    clean(store)


def _scripted(rng: random.Random, day: datetime) -> list[Event]:
    at = day + 9 * HOUR
    person = dict(
        country="DE",
        region="DE-BE",
        city="2950159",
        browser="Chrome",
        browser_version="120",
        os="Windows",
        os_version="10",
        device="desktop",
    )
    events = []
    for visitor_id, gaps in (
        (101, [timedelta(minutes=29)]),
        (102, [timedelta(minutes=31)]),
        (103, [timedelta(minutes=30)]),
        (104, []),
    ):
        events += person_visit(rng, SITE, visitor_id, at, person, gaps)
    events.append(Event(SITE, 105, at, path="/pricing", **person))  # a bounce…
    events.append(Event(SITE, 105, at + HOUR, "event", "engagement", "/pricing", **person))  # …still
    events.append(Event(SITE, 106, at, path="/docs", **person))  # not a bounce:
    events.append(Event(SITE, 106, at + timedelta(seconds=20), "event", "Signup", "/docs", **person))
    events.append(Event(SITE, 0, at, path="/", **person))  # no visitor hash: a visitor of its own
    events.append(Event(SITE, 0, at + timedelta(seconds=1), path="/", **person))
    return events


def q(t: Traffic, metrics=ALL, filters=(), start=None, end=None, **more) -> StatsQuery:
    return StatsQuery(SITE, start or t.d[0], end or t.d[4], metrics, tuple(filters), **more)


def f(prop: str, op: str, *values: str) -> Filter:
    return Filter(prop, op, values)


def both(kind, store, query: StatsQuery):
    """The answer of each path, which must be the same."""
    aggregated = kind(store, _forced(query, "aggregates"))
    raw = kind(store, _forced(query, "events"))
    assert aggregated == raw
    return aggregated


def _forced(query: StatsQuery, source: str) -> StatsQuery:
    return StatsQuery(**{**query.__dict__, "source": source})


# --- aggregate ---------------------------------------------------------------------------

AGGREGATES = [
    ((), ALL),
    ([f("visit:source", "==", "google")], ALL),
    ([f("visit:source", "==", "Direct / None")], ALL),
    ([f("visit:source", "==", "google", "twitter.com")], ALL),
    ([f("visit:country", "!=", "DE")], ALL),
    ([f("visit:entry_page", "~", "blog")], ALL),
    ([f("visit:country", "==", "FR"), f("visit:device", "==", "desktop")], ALL),
    ([f("event:page", "==", "/pricing")], NO_VPV),
    ([f("event:page", "~", "blog")], NO_VPV),
    ([f("event:page", "!=", "/")], NO_VPV),
    ([f("visit:country", "==", "DE"), f("event:page", "==", "/docs")], NO_VPV),
    ([f("event:name", "==", "Signup")], EVENT_METRICS),
    ([f("event:hostname", "==", "www.a.test")], EVENT_METRICS),
    ([f("event:props:plan", "==", "pro")], EVENT_METRICS),
    ([f("event:props:plan", "==", "(none)")], EVENT_METRICS),
    ([f("event:name", "==", "Signup"), f("visit:source", "==", "google")], EVENT_METRICS),
    ([f("event:goal", "==", "Signup")], ("visitors", "events", "conversion_rate")),
    ([f("event:goal", "==", "Visit /pricing")], ("visitors", "events", "conversion_rate")),
    ([f("event:goal", "==", "Signup", "Play"), f("visit:country", "==", "DE")], ("visitors", "conversion_rate")),
]


@pytest.mark.parametrize("filters, metrics", AGGREGATES)
def test_aggregate_equals_the_generated_answer_on_both_paths(store, traffic, filters, metrics):
    query = q(traffic, metrics, filters)
    assert both(queries.aggregate, store, query) == traffic.oracle.aggregate(query)


@pytest.mark.parametrize("span", ["whole days", "partial days", "one rolled day", "today so far"])
def test_aggregate_over_any_whole_hours(store, traffic, span):
    d = traffic.d
    start, end = {
        "whole days": (d[0], d[4]),
        "partial days": (d[0] + 6 * HOUR, d[2] + 18 * HOUR),
        "one rolled day": (d[1], d[2]),
        "today so far": (d[3], d[3] + 12 * HOUR),
    }[span]
    query = q(traffic, ALL, start=start, end=end)
    assert queries.plan(query) == "aggregates"
    assert both(queries.aggregate, store, query) == traffic.oracle.aggregate(query)


def test_the_scripted_visits_are_counted_by_the_rules(store, traffic):
    morning = q(
        traffic,
        ("visitors", "visits", "bounce_rate"),
        start=traffic.d[0] + 9 * HOUR,
        end=traffic.d[0] + 10 * HOUR,
        filters=[f("visit:country", "==", "DE"), f("visit:browser", "==", "Chrome")],
    )
    found = both(queries.aggregate, store, morning)
    expected = traffic.oracle.aggregate(morning)
    assert found == expected
    # 101 (29 min), 103 (30 min) and 104 are one visit each, 102 (31 min) two; 105, 106,
    # and the two events without a hash (two visitors) one each, among the random ones.
    scripted = [v for v in traffic.oracle.visits if v.visitor in (101, 102, 103, 104, 105, 106)]
    assert sorted(v.visitor for v in scripted) == [101, 102, 102, 103, 104, 105, 106]
    assert [v.bounce for v in scripted if v.visitor in (105, 106)] == [True, False]


# --- timeseries --------------------------------------------------------------------------

SERIES = [
    ("date", (), ALL, None),
    ("month", (), ALL, None),
    ("hour", (), ALL, 3),
    ("hour", (), ALL, 0),
    ("date", [f("visit:source", "==", "google")], ALL, None),
    ("date", [f("event:page", "==", "/pricing")], NO_VPV, None),
    ("hour", [f("event:page", "~", "blog")], NO_VPV, 3),
    ("date", [f("event:name", "==", "Signup")], EVENT_METRICS, None),
    ("date", [f("event:goal", "==", "Signup")], ("visitors", "conversion_rate"), None),
]


@pytest.mark.parametrize("interval, filters, metrics, one_day", SERIES)
def test_timeseries_equals_the_generated_answer_on_both_paths(store, traffic, interval, filters, metrics, one_day):
    start, end = (traffic.d[one_day], traffic.d[one_day] + DAY) if one_day is not None else (traffic.d[0], traffic.d[4])
    query = q(traffic, metrics, filters, start=start, end=end, interval=interval)
    found = both(queries.timeseries, store, query)
    assert found == traffic.oracle.timeseries(query, buckets(start, end, interval))
    assert len(found) == {"hour": 24, "date": 4, "month": len({b["date"] for b in found})}[interval]


# --- breakdown ---------------------------------------------------------------------------

BREAKDOWNS = [
    ("visit:source", "source", (), NO_VPV),
    ("visit:referrer", "referrer", (), ("visitors", "visits")),
    ("visit:utm_source", "utm_source", (), ("visitors", "visits", "bounce_rate")),
    ("visit:utm_medium", "utm_medium", (), ("visitors",)),
    ("visit:utm_campaign", "utm_campaign", (), ("visits", "visitors")),
    ("visit:entry_page", "entry_page", (), NO_VPV),
    ("visit:exit_page", "exit_page", (), ("visitors", "visits")),
    ("visit:device", "device", (), ("visitors", "bounce_rate")),
    ("visit:browser", "browser", (), ("visitors",)),
    ("visit:browser_version", "browser_version", (), ("visitors", "visits")),
    ("visit:os", "os", (), ("visitors",)),
    ("visit:os_version", "os_version", (), ("visitors",)),
    ("visit:country", "country", (), NO_VPV),
    ("visit:region", "region", (), ("visitors",)),
    ("visit:city", "city", (), ("visitors",)),
    ("event:page", "page", (), NO_VPV),
    ("event:name", "name", (), EVENT_METRICS),
    ("event:hostname", "hostname", (), EVENT_METRICS),
    ("event:props:plan", "plan", (), EVENT_METRICS),
    ("event:goal", "goal", (), ("visitors", "events", "conversion_rate")),
    ("visit:source", "source", [f("visit:country", "==", "DE")], NO_VPV),
    ("visit:source", "source", [f("visit:source", "!=", "google")], ("visitors", "visits")),
    ("visit:country", "country", [f("event:page", "==", "/pricing")], NO_VPV),
    ("event:page", "page", [f("visit:source", "==", "google")], NO_VPV),
    ("event:page", "page", [f("event:page", "~", "blog")], ("visitors", "pageviews", "bounce_rate")),
    ("event:page", "page", [f("visit:country", "==", "DE")], EVENT_METRICS),
    ("event:name", "name", [f("visit:source", "==", "google")], EVENT_METRICS),
    ("event:props:plan", "plan", [f("event:props:plan", "!=", "free")], EVENT_METRICS),
    ("visit:source", "source", [f("event:goal", "==", "Signup")], ("visitors", "conversion_rate")),
    ("event:goal", "goal", [f("visit:country", "==", "DE")], ("visitors", "events", "conversion_rate")),
]


@pytest.mark.parametrize("prop, key, filters, metrics", BREAKDOWNS)
def test_breakdown_equals_the_generated_answer_on_both_paths(store, traffic, prop, key, filters, metrics):
    query = q(traffic, metrics, filters, property=prop, limit=1000)
    found = both(queries.breakdown, store, query)
    parent = {"visit:browser_version": "browser", "visit:os_version": "os"}.get(prop)
    expected = traffic.oracle.breakdown(query, key, parent)
    assert _by_key(found, key, parent) == _by_key(expected, key, parent)
    assert found, "the generated traffic has rows for every property"
    first = metrics[0] if metrics[0] != "conversion_rate" else "visitors"
    ranks = [(-(row[first] if row[first] is not None else -1), row[key]) for row in found]
    assert ranks == sorted(ranks)


def _by_key(rows: list[dict], key: str, parent: str | None) -> dict:
    return {(row[key], row.get(parent)): row for row in rows}


def test_breakdown_pages_through_its_rows(store, traffic):
    everything = queries.breakdown(store, q(traffic, ("visitors",), property="event:page", limit=1000))
    second = both(queries.breakdown, store, q(traffic, ("visitors",), property="event:page", limit=2, page=2))
    assert second == everything[2:4]


# --- realtime, planner, refusals -----------------------------------------------------------


def test_realtime_counts_visitors_of_the_last_five_minutes(store, traffic):
    for minutes_ago in (0, 7, 41, 120):
        now = traffic.now - timedelta(minutes=minutes_ago)
        expected = {
            e.visitor for e in traffic.oracle.events if e.site == SITE and now - timedelta(minutes=5) < e.ts <= now
        }
        assert queries.realtime_visitors(store, SITE, now) == len(expected)


@pytest.mark.parametrize(
    "filters, prop, interval, start_offset, expected",
    [
        ((), None, None, timedelta(0), "aggregates"),
        ([f("visit:country", "==", "DE")], "visit:source", None, timedelta(0), "aggregates"),
        ([f("event:name", "==", "Signup")], None, None, timedelta(0), "aggregates"),
        ([f("event:name", "==", "Signup")], None, "hour", timedelta(0), "events"),
        ([f("event:name", "==", "Signup"), f("event:page", "==", "/")], None, None, timedelta(0), "events"),
        ([f("event:name", "==", "Signup"), f("visit:source", "==", "google")], None, None, timedelta(0), "aggregates"),
        ([], "event:name", None, timedelta(0), "aggregates"),
        ([f("event:page", "==", "/")], "event:name", None, timedelta(0), "events"),
        ([f("visit:source", "==", "google")], "event:name", None, timedelta(0), "aggregates"),
        ((), None, None, timedelta(minutes=30), "events"),
    ],
)
def test_the_planner_reads_aggregates_when_they_hold_the_query(
    traffic, filters, prop, interval, start_offset, expected
):
    metrics = EVENT_METRICS
    query = q(traffic, metrics, filters, start=traffic.d[0] + start_offset, property=prop, interval=interval)
    assert queries.plan(query) == expected


@pytest.mark.parametrize(
    "metrics, filters, prop, message",
    [
        (("visits",), [f("event:name", "==", "Signup")], None, "session metrics"),
        (("bounce_rate",), [], "event:props:plan", "session metrics"),
        (("views_per_visit",), [], "visit:source", "breakdown"),
        (("views_per_visit",), [f("event:page", "==", "/")], None, "event:page"),
        (("conversion_rate",), [], None, "event:goal"),
        (("visitors",), [f("event:goal", "==", "Nope")], None, "not configured"),
        (("visitors",), [f("event:goal", "!=", "Signup")], None, "event:goal"),
        (("visitors",), [f("visit:nope", "==", "x")], None, "unknown property"),
        (("nope",), [], None, "not recognized"),
    ],
)
def test_refused_combinations_raise_query_error(store, traffic, metrics, filters, prop, message):
    kind = queries.breakdown if prop else queries.aggregate
    with pytest.raises(QueryError, match=message):
        kind(store, q(traffic, metrics, filters, property=prop))


def test_goals_are_added_listed_and_removed(store, traffic):
    assert add_goal(store, "d.test", "page", "/thanks").display_name == "Visit /thanks"
    assert add_goal(store, "d.test", "event", "Signup").display_name == "Signup"
    assert [(g.kind, g.value) for g in list_goals(store, "d.test")] == [("event", "Signup"), ("page", "/thanks")]
    assert remove_goal(store, "d.test", "page", "/thanks")
    assert not remove_goal(store, "d.test", "page", "/thanks")
    assert [g.display_name for g in list_goals(store, "d.test")] == ["Signup"]
    for kind, value in (("page", "thanks"), ("url", "/x"), ("event", " ")):
        with pytest.raises(ValueError):
            add_goal(store, "d.test", kind, value)
