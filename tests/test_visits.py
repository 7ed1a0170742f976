"""The visit builder on the real engine: visits cut by the rules whatever the order and
the batches the events arrive in, each written once, days rolled up once; retention
of the new tables. Expected visits are cut in Python from the generated events."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

import queries
from queries.model import Filter, StatsQuery
from rollups.daily import roll_up_closed_days
from rollups.visit_builder import LATENESS, build_closed_visits, watermark
from storage.migrations import MAX_RETENTION_DAYS, TTL_TABLES, apply_retention
from tests.traffic import SITES, Event, Visit, clean, cut_visits, insert, random_traffic

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
NEW_TABLES = {"visits", "events_hourly", "stats_daily", "stats_pairs", "stats_days", "visit_builds"}
PERSON = dict(
    country="DE",
    region="DE-BE",
    city="2950159",
    browser="Chrome",
    browser_version="120",
    os="Windows",
    os_version="10",
    device="desktop",
)


@pytest.fixture
def store_(store):
    clean(store)
    yield store
    clean(store)


def _day(days_ago: int) -> datetime:
    return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - days_ago * DAY


def stored_visits(store) -> list[tuple]:
    return sorted(
        tuple(tuple(c) if isinstance(c, list) else c for c in row)
        for row in store.rows(
            "SELECT site, visitor, start, last, entry_page, exit_page, pageviews, events, duration, is_bounce, source, "
            "country, pages, page_pageviews, page_events FROM beacon.visits"
        )
    )


def expected_visits(visits: list[Visit]) -> list[tuple]:
    rows = []
    for v in visits:
        pages = sorted(v.pages().items())
        rows.append(
            (
                v.site,
                v.visitor,
                _naive(v.start),
                _naive(v.last),
                v.attr("entry_page"),
                v.attr("exit_page"),
                v.pageviews,
                len(v.events),
                v.duration,
                int(v.bounce),
                v.attr("source"),
                v.attr("country"),
                tuple(p for p, _ in pages),
                tuple(c[0] for _, c in pages),
                tuple(c[1] for _, c in pages),
            )
        )
    return sorted(rows)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def test_gaps_bounces_and_engagement_make_the_visits_of_the_rules(store_):
    at = _day(3) + timedelta(hours=9)
    events = []
    for visitor_id, gap in (
        (1, 29 * MINUTE),
        (2, 31 * MINUTE),
        (3, 30 * MINUTE),
        (4, 30 * MINUTE + timedelta(milliseconds=1)),
        (5, None),
    ):
        events.append(Event("a.test", visitor_id, at, path="/a", source="google", **PERSON))
        if gap is not None:
            events.append(Event("a.test", visitor_id, at + gap, path="/b", **PERSON))
    events += [
        Event("a.test", 6, at, path="/x", **PERSON),
        Event("a.test", 6, at + 5 * MINUTE, "event", "engagement", "/x", **PERSON),  # still a bounce
        Event("a.test", 7, at, path="/y", **PERSON),
        Event("a.test", 7, at + MINUTE, "event", "Signup", "/y", **PERSON),  # not a bounce
        Event("a.test", 8, at, "event", "Signup", "/z", **PERSON),  # no pageview: no entry page
        Event("a.test", 9, at + timedelta(hours=14, minutes=50), **PERSON),  # 23:50 and 00:10: the day
        Event("a.test", 9, at + timedelta(hours=15, minutes=10), **PERSON),
    ]  # ends the visit
    insert(store_, events)
    build_closed_visits(store_, at + 2 * DAY)
    expected = cut_visits(events)
    assert stored_visits(store_) == expected_visits(expected)
    by_visitor = {}
    for v in expected:
        by_visitor.setdefault(v.visitor, []).append(v)
    assert [len(by_visitor[i]) for i in range(1, 10)] == [1, 2, 1, 2, 1, 1, 1, 1, 2]
    assert [v.bounce for v in by_visitor[6] + by_visitor[7] + by_visitor[8]] == [True, False, False]


def test_visits_are_right_and_written_once_while_events_arrive_late_and_in_pieces(store_):
    """Events reach the store up to 8 minutes after their time, in batches of whatever
    arrived, and the builder runs every 7 minutes: every visit is written once, as it is
    in the end, and only once closed."""
    rng = random.Random(2)
    day = _day(4)
    events = random_traffic(rng, day, people=12, span=(3600, 5 * 3600))
    arrival = {id(e): e.ts + timedelta(seconds=rng.uniform(0, 8 * 60)) for e in events}
    final = expected_visits(cut_visits(events))
    pending = sorted(events, key=lambda e: arrival[id(e)])
    now = day + timedelta(hours=1)
    runs = 0
    while now < day + timedelta(hours=7):
        arrived = [e for e in pending if arrival[id(e)] <= now]
        pending = pending[len(arrived) :]
        rng.shuffle(arrived)
        for part in (arrived[::2], arrived[1::2]):  # two processes' batches
            insert(store_, part)
        build_closed_visits(store_, now)
        runs += 1
        built = stored_visits(store_)
        assert len(set(built)) == len(built)
        assert set(built) <= set(final)  # a written visit never changes afterwards
        assert all(row[3] < _naive(now - 30 * MINUTE - LATENESS) for row in built)  # only closed ones
        if runs % 5 == 0:  # built and open visits together: what the raw path cuts from all events
            for kind, query in _views(day):
                aggregated = kind(store_, replace(query, source="aggregates"))
                assert aggregated == kind(store_, replace(query, source="events"))
        now += 7 * MINUTE
    assert not pending and runs > 40
    assert stored_visits(store_) == final


def _views(day: datetime) -> list[tuple]:
    metrics = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "events")
    return [
        (queries.timeseries, StatsQuery("a.test", day, day + DAY, metrics, interval="hour")),
        (queries.aggregate, StatsQuery("a.test", day, day + DAY, metrics)),
        (queries.breakdown, StatsQuery("a.test", day, day + DAY, metrics, property="visit:source")),
        (queries.breakdown, StatsQuery("a.test", day, day + DAY, metrics[:2], property="event:page")),
        (
            queries.aggregate,
            StatsQuery("b.test", day, day + DAY, metrics, filters=(Filter("event:page", "~", ("blog",)),)),
        ),
    ]


def test_a_window_built_again_writes_nothing_twice(store_):
    rng = random.Random(3)
    day = _day(5)
    events = random_traffic(rng, day, people=10)
    insert(store_, events)
    now = day + timedelta(hours=13)
    build_closed_visits(store_, now)
    first = stored_visits(store_)
    assert first
    # The builder died after writing its last window, before recording it.
    store_.command(
        "DELETE FROM beacon.visit_builds WHERE until = {u:DateTime64(3, 'UTC')}",
        {"u": watermark(store_).replace(tzinfo=None)},
    )
    build_closed_visits(store_, now + 3 * MINUTE)
    build_closed_visits(store_, now + 3 * MINUTE)
    again = stored_visits(store_)
    assert len(set(again)) == len(again)
    assert set(first) <= set(again)
    assert again == expected_visits(
        [v for v in cut_visits(events) if v.last < now + 3 * MINUTE - 30 * MINUTE - LATENESS]
    )


def test_a_roll_up_cut_short_is_done_again(store_):
    rng = random.Random(4)
    day = _day(6)
    insert(store_, random_traffic(rng, day, people=10))
    build_closed_visits(store_, day + DAY + timedelta(hours=1))
    rolled = store_.rows("SELECT * FROM beacon.stats_daily ORDER BY ALL")
    assert rolled and [d for (d,) in store_.rows("SELECT day FROM beacon.stats_days FINAL")] == [day.date()]
    # A roll-up that died half-way: some rows written, the day not listed.
    store_.command("TRUNCATE TABLE beacon.stats_days")
    store_.command("DELETE FROM beacon.stats_daily WHERE dim != ''")
    assert roll_up_closed_days(store_, watermark(store_)) == [day.date()]
    assert store_.rows("SELECT * FROM beacon.stats_daily ORDER BY ALL") == rolled


def test_the_aggregates_answer_after_the_raw_events_expire(store_):
    rng = random.Random(5)
    day = _day(8)
    insert(store_, random_traffic(rng, day, people=10) + random_traffic(rng, day + DAY, people=10))
    build_closed_visits(store_, day + 2 * DAY + timedelta(hours=1))
    metrics = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "events")
    asked = [StatsQuery(site, day, day + 2 * DAY, metrics, interval="date") for site in SITES]
    before = [queries.timeseries(store_, q) for q in asked]
    store_.command("TRUNCATE TABLE beacon.events")  # what the raw retention does to old days
    assert [queries.timeseries(store_, q) for q in asked] == before
    assert all(queries.plan(q) == "aggregates" for q in asked)


def _ttl_days(store, table: str) -> int:
    ((ddl,),) = store.rows(
        "SELECT create_table_query FROM system.tables WHERE database = 'beacon' AND name = {t:String}", {"t": table}
    )
    return int(ddl.split(" TTL ", 1)[1].split("toIntervalDay(", 1)[1].split(")", 1)[0])


def test_every_new_table_expires_within_two_years(store):
    tables = {
        name
        for (name,) in store.rows(
            "SELECT name FROM system.tables WHERE database = 'beacon' AND engine NOT IN ('MaterializedView')"
        )
    }
    assert NEW_TABLES <= tables and NEW_TABLES <= set(TTL_TABLES)
    for table in NEW_TABLES:
        assert _ttl_days(store, table) <= MAX_RETENTION_DAYS, table


def test_raw_retention_shortens_the_events_only(store):
    try:
        apply_retention(store, 400, raw_days=90)
        assert _ttl_days(store, "events") == 90
        assert {_ttl_days(store, t) for t in NEW_TABLES} == {400}
        with pytest.raises(ValueError):
            apply_retention(store, 400, raw_days=401)
    finally:
        apply_retention(store, MAX_RETENTION_DAYS)
    assert {_ttl_days(store, t) for t in NEW_TABLES | {"events"}} == {MAX_RETENTION_DAYS}
