"""Sites in their own time zones: days, hours and months are the site's, daylight
saving days have 23 or 25 hours, and every number equals the one computed in Python
from the generated events (tests/traffic.py, with the zones: zoneinfo and nothing
of the project's) on both paths.

Fifteen days of traffic around the clock changes of 2026 for four zones:
America/Toronto (2026-03-08 forward, 2026-11-01 back), Australia/Lord_Howe (a
30-minute shift: back on 2026-04-05, forward on 2026-10-04), Asia/Kathmandu (+05:45)
and Pacific/Kiritimati (+14), beside a UTC site.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import queries
from common.zones import start_of
from queries.model import Filter, StatsQuery
from rollups.rezone import first_rezoned_day, rezone
from rollups.visit_builder import build_closed_visits
from schemas.events import Beacon, RawEvent, RequestContext
from storage.clickhouse import mutation_target
from storage.sink import EventSink
from storage.sites import add_site, set_timezone
from streams.geo import GeoLookup
from streams.privacy_filter import FilterEnv, filter_event
from streams.visitor import DailySalts
from tests.traffic import Event, Oracle, batches, clean, insert, person_visit

ZONES = {
    "toronto.test": "America/Toronto",
    "lordhowe.test": "Australia/Lord_Howe",
    "kathmandu.test": "Asia/Kathmandu",
    "kiritimati.test": "Pacific/Kiritimati",
    "utc.test": "UTC",
}
WINDOWS = [date(2026, 3, 7), date(2026, 4, 4), date(2026, 10, 3), date(2026, 10, 31), date(2026, 11, 1)]
DAYS = sorted({w + timedelta(days=i) for w in WINDOWS for i in range(3)})  # 15 days
CLOCK_CHANGES = {
    ("toronto.test", date(2026, 3, 8)): 23,
    ("toronto.test", date(2026, 11, 1)): 25,
    ("lordhowe.test", date(2026, 4, 5)): 25,
    ("lordhowe.test", date(2026, 10, 4)): 24,
}
METRICS = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "events")
PATHS = ("events", "aggregates")


def local_midnight(day: date, zone: str) -> datetime:
    """The first instant of a local day, found minute by minute (no project code)."""
    at = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) - timedelta(hours=15)
    while at.astimezone(ZoneInfo(zone)).date() < day:
        at += timedelta(minutes=1)
    return at


def traffic_of(rng: random.Random) -> list[Event]:
    """Each site's visitors over the 15 local days, at any hour of the day, some
    browsing across the site's midnight and across the clock changes."""
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
    for site, zone in ZONES.items():
        for day in DAYS:
            start = local_midnight(day, zone)
            for _ in range(6):
                visitor = rng.getrandbits(63) | 1
                at = start + timedelta(seconds=rng.uniform(0, 24 * 3600))
                events += person_visit(rng, site, visitor, at, person)
            late = start + timedelta(hours=24) - timedelta(minutes=10)  # across midnight: two visits
            events += person_visit(
                rng, site, rng.getrandbits(63) | 1, late, person, [timedelta(minutes=5), timedelta(minutes=10)]
            )
    for e in events:  # the visitor hash is salted per local day: a person is another visitor the next day
        e.visitor_id = hash((e.visitor_id, e.ts.astimezone(ZoneInfo(ZONES[e.site])).date())) & (2**62 - 1) | 1
    return events


@pytest.fixture(scope="module")
def zoned(store):
    clean(store)
    for site, zone in ZONES.items():
        add_site(store, site, timezone_name=zone)
    rng = random.Random(2026)
    events = traffic_of(rng)
    for batch in batches(rng, events, 5):
        insert(store, batch)
    build_closed_visits(store, local_midnight(DAYS[-1], "UTC") + timedelta(days=2))
    yield Oracle(events, zones=ZONES)
    clean(store)
    store.command(f"DELETE FROM {store.mutable('sites')} WHERE domain IN {{d:Array(String)}}", {"d": list(ZONES)})


def zoned_query(site: str, first: date, last: date, metrics=METRICS, **more) -> StatsQuery:
    zone = ZONES[site]
    return StatsQuery(
        site,
        local_midnight(first, zone),
        local_midnight(last + timedelta(days=1), zone),
        metrics,
        timezone=zone,
        **more,
    )


def on_path(kind, store, q: StatsQuery, path: str):
    return kind(store, StatsQuery(**{**q.__dict__, "source": path}))


def expected_hours(site: str, day: date) -> list[str]:
    """The day's hour labels, minute by minute: the wall-clock hour, with its UTC offset
    when the clock passes through that hour twice."""
    zone = ZoneInfo(ZONES[site])
    at, end, seen = local_midnight(day, ZONES[site]), local_midnight(day + timedelta(days=1), ZONES[site]), []
    while at < end:
        here = at.astimezone(zone)
        key = (here.strftime("%Y-%m-%d %H:00:00"), here.utcoffset())
        if key not in seen:
            seen.append(key)
        at += timedelta(minutes=1)
    walls = [wall for wall, _ in seen]

    def offset(delta: timedelta) -> str:
        minutes = int(delta.total_seconds()) // 60
        return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    return [wall + offset(delta) if walls.count(wall) > 1 else wall for wall, delta in seen]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("site", list(ZONES))
def test_each_local_day_and_the_whole_span_equal_the_generated_answer(store, zoned, site, path):
    for day in DAYS:
        q = zoned_query(site, day, day)
        assert on_path(queries.aggregate, store, q, path) == zoned.aggregate(q), day
    q = zoned_query(site, DAYS[0], DAYS[-1])
    assert on_path(queries.aggregate, store, q, path) == zoned.aggregate(q)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("site", list(ZONES))
def test_the_daily_series_is_in_local_days(store, zoned, site, path):
    q = zoned_query(site, DAYS[0], DAYS[-1], interval="date")
    labels = [(DAYS[0] + timedelta(days=i)).isoformat() for i in range((DAYS[-1] - DAYS[0]).days + 1)]
    found = on_path(queries.timeseries, store, q, path)
    assert [row["date"] for row in found] == labels
    assert found == zoned.timeseries(q, labels)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("site, day", [(s, d) for s in ZONES for d in DAYS[::2]] + list(CLOCK_CHANGES))
def test_the_hourly_series_has_the_local_hours_of_the_day(store, zoned, site, day, path):
    q = zoned_query(site, day, day, interval="hour")
    found = on_path(queries.timeseries, store, q, path)
    labels = expected_hours(site, day)
    if (site, day) in CLOCK_CHANGES:
        assert len(labels) == CLOCK_CHANGES[(site, day)]
    assert [row["date"] for row in found] == labels
    assert found == zoned.timeseries(q, labels)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "prop, filters",
    [
        ("visit:source", ()),
        ("event:page", ()),
        ("visit:entry_page", ()),
        ("visit:source", (Filter("event:page", "==", ("/pricing",)),)),
        ("event:page", (Filter("visit:source", "==", ("google",)),)),
    ],
)
def test_breakdowns_over_local_days(store, zoned, prop, filters, path):
    metrics = ("visitors", "pageviews") if prop == "event:page" or filters else METRICS
    for site in ("toronto.test", "kiritimati.test"):
        q = zoned_query(site, DAYS[6], DAYS[11], metrics, property=prop, filters=filters, limit=1000)
        key = prop.split(":", 1)[1]
        found = on_path(queries.breakdown, store, q, path)
        assert sorted(found, key=lambda r: r[key]) == sorted(zoned.breakdown(q, key), key=lambda r: r[key])


def test_a_visit_never_crosses_the_sites_midnight(store, zoned):
    """Visits are cut at the site's midnight (a late visitor of each day browses across
    it), so the visits of the local days add up to the span's."""
    first, last = date(2026, 10, 31), date(2026, 11, 4)  # the last window, and the day after it
    for site in ZONES:
        span = zoned_query(site, first, last, ("visits",))
        days = [
            zoned_query(site, first + timedelta(days=i), first + timedelta(days=i), ("visits",))
            for i in range((last - first).days + 1)
        ]
        assert sum(queries.aggregate(store, q)["visits"] for q in days) == queries.aggregate(store, span)["visits"]


def test_one_person_across_utc_midnight_is_one_visitor_in_a_site_west_of_utc(store, tmp_path):
    """Beacons at 23:50 and 00:10 UTC, through the privacy filter (the real salted
    hash) into the store: one visitor and one visit on the Toronto site's day (18:50
    and 19:10 there), two of each over the UTC site's two days."""
    salts = DailySalts(tmp_path)
    env = FilterEnv(GeoLookup(None), salts=salts)
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    before = datetime(2026, 12, 1, 23, 50, tzinfo=timezone.utc)
    rows = []
    for site, zone in (("late.toronto.test", "America/Toronto"), ("late.utc.test", "UTC")):
        for at in (before, before + timedelta(minutes=20)):
            raw = RawEvent(
                str(uuid.uuid4()),
                Beacon(site=site, url=f"https://{site}/"),
                RequestContext(at.timestamp(), "203.0.113.77", ua),
                zone,
            )
            rows.append(filter_event(raw, env, Counter()))
    EventSink(store).write(rows)
    try:
        toronto = StatsQuery(
            "late.toronto.test",
            local_midnight(date(2026, 12, 1), "America/Toronto"),
            local_midnight(date(2026, 12, 2), "America/Toronto"),
            ("visitors", "visits"),
            timezone="America/Toronto",
        )
        utc = StatsQuery(
            "late.utc.test",
            before.replace(hour=0, minute=0),
            before.replace(hour=0, minute=0) + timedelta(days=2),
            ("visitors", "visits"),
        )
        assert queries.aggregate(store, toronto) == {"visitors": 1, "visits": 1}
        assert queries.aggregate(store, utc) == {"visitors": 2, "visits": 2}
    finally:
        store.command(f"DELETE FROM {store.mutable('events')} WHERE site IN ('late.toronto.test', 'late.utc.test')")


def test_a_site_moved_to_another_zone_is_cut_again_where_raw_events_remain(store):
    """A UTC site with nine days of traffic moves to Toronto, with five days of raw
    events held: from the first whole Toronto day of those five, its days are
    Toronto's (both paths); the days before keep their UTC cut (rolled up as they
    were), and zone_since says from when. The move is made as on a cluster, every
    deletion addressed to the local tables of every node (ClusterShapedStore); on
    this one node its statements are those of a single server.

    One run only: past days' traffic inserted after another run's build would be
    below the visit builder's watermark, and get no visits."""
    site = "moved.test"
    mover = ClusterShapedStore(store)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    today = now.date()
    rng = random.Random(9)
    person = dict(country="FR", browser="Firefox", os="Linux", device="desktop")
    events = []
    for back in range(9, 0, -1):
        day = datetime.combine(today - timedelta(days=back), datetime.min.time(), timezone.utc)
        for _ in range(8):
            at = day + timedelta(seconds=rng.uniform(0, 24 * 3600))
            visitor = hash((rng.random(), at.date())) & (2**62 - 1) | 1
            events += person_visit(rng, site, visitor, at, person)
    add_site(store, site)
    insert(store, events)
    build_closed_visits(store, now)
    try:
        first = first_rezoned_day(now, 5, "America/Toronto")
        moved = set_timezone(mover, site, "America/Toronto", since=start_of(first, "America/Toronto"))
        rezone(mover, site, "America/Toronto", first)
        assert moved.zone_since == local_midnight(first, "America/Toronto")
        # The first Toronto day that starts at or after the oldest raw event held: the next
        # one, unless the oldest instant is itself a Toronto midnight (a run at 05:xx UTC in winter).
        oldest = (now - timedelta(days=5)).astimezone(ZoneInfo("America/Toronto"))
        assert first == oldest.date() + timedelta(days=0 if oldest.time() == time(0) else 1)

        toronto, utc = Oracle(events, zones={site: "America/Toronto"}), Oracle(events)
        for day in (first, first + timedelta(days=1), first + timedelta(days=2)):
            q = StatsQuery(
                site,
                local_midnight(day, "America/Toronto"),
                local_midnight(day + timedelta(days=1), "America/Toronto"),
                METRICS,
                timezone="America/Toronto",
            )
            for path in PATHS:
                assert on_path(queries.aggregate, store, q, path) == toronto.aggregate(q), (day, path)
        older = first - timedelta(days=2)  # rolled up in UTC before the move: as it was
        q = StatsQuery(
            site,
            local_midnight(older, "America/Toronto"),
            local_midnight(older + timedelta(days=1), "America/Toronto"),
            METRICS,
            timezone="America/Toronto",
        )
        utc_day = StatsQuery(
            site, local_midnight(older, "UTC"), local_midnight(older + timedelta(days=1), "UTC"), METRICS
        )
        assert queries.aggregate(store, q) == utc.aggregate(utc_day)
        cut = {statement.split()[2] for statement in mover.on_cluster}
        assert cut == {"beacon.visits_local", "beacon.stats_daily_local", "beacon.stats_pairs_local"}, cut
    finally:
        for table in ("events", "visits", "stats_daily", "stats_pairs"):
            store.command(f"DELETE FROM {store.mutable(table)} WHERE site = {{s:String}}", {"s": site})
        store.command(f"DELETE FROM {store.mutable('sites')} WHERE domain = {{s:String}}", {"s": site})


CLUSTER = "beacon_cluster"


class ClusterShapedStore:
    """The embedded store as the processes of a ClickHouse cluster see theirs
    (``?cluster=`` in the DSN): a Distributed table takes no deletion, so each one
    must name the ``_local`` tables ON CLUSTER (``Store.mutable``). Such a statement
    must parse in that form (no cluster runs here: docs/scaling.md); it then runs on
    this one node's table (the statement of a single server: ``mutation_target``
    without a cluster), so the test's numbers show what the statements did."""

    def __init__(self, store):
        self._store = store
        self.on_cluster: list[str] = []

    def mutable(self, table: str) -> str:
        return mutation_target(table, CLUSTER)

    def command(self, sql: str, parameters: dict | None = None):
        if f" ON CLUSTER '{CLUSTER}'" in sql:
            self._store.rows("SELECT formatQuery({q:String})", {"q": sql})  # refused unless it parses
            self.on_cluster.append(sql)
            sql = sql.replace(f"_local ON CLUSTER '{CLUSTER}'", "")
        return self._store.command(sql, parameters)

    def __getattr__(self, name: str):
        return getattr(self._store, name)
