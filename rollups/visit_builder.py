"""The visit builder: writes each visit to beacon.visits once it is closed, and each
closed UTC day's figures to beacon.stats_daily. It runs in the process that owns
the store (``VisitBuilder``, every minute), or by hand (``build_closed_visits``).

Why a builder, not a materialized view: a view sees one INSERT's rows, while one
visitor's events arrive in different batches, HTTP processes or Kafka partitions,
and out of order. The builder reads the events once no more can join a visit.

* A visit is closed when its last event is older than 30 minutes (the gap that
  ends a visit) plus ``lateness`` (how late an event may be stored after its time:
  batching, Kafka lag). An event stored later than that is counted by the event
  figures but misses its visit (see docs/analytics.md).
* Progress is a watermark: every visit whose last event is before it is written.
  Each run writes the visits whose last event lies in [watermark, new watermark)
  (whole minutes, one window per UTC day at most: a visit never spans two days),
  then records the window in beacon.visit_builds. A window run again (a crash
  between the two writes) writes only the visits not yet there (the INSERT leaves
  out those already stored), and the same window's INSERT carries a deduplication
  token, so two builders racing on it store it once.
* A day is rolled up once the watermark has passed its end: every visit of it is
  then written. Its rows go to beacon.stats_daily and beacon.stats_pairs, then the
  day to beacon.stats_days; rows of a day not listed there (a run that died
  half-way) are deleted before the day is rolled up again.

Queries read the watermark and the list of rolled-up days, so a visit or a day is
counted once whether or not the builder has got to it (queries/relations.py).

* ``VisitBuilder`` does not trust a forward step of the wall clock (``BuildClock``):
  a visit closed too early is written for good, and the beacons that would have
  continued it fall below the watermark. ``build_closed_visits`` closes by the
  ``now`` it is given.
"""
from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from common import clock as wall_clock
from queries.properties import CATALOGUE
from queries.days import UTC, day_start
from queries.sessions import COUNTED, GAP_MS, VISIT_FIELDS, VISITOR_KEY, visits_from_events
from queries.sql import Params, epoch_ms
from storage.clickhouse import Store

log = logging.getLogger("beacon.visits")

GAP = timedelta(milliseconds=GAP_MS)
LATENESS = timedelta(minutes=10)
DAY = timedelta(days=1)


def build_closed_visits(store: Store, now: datetime, lateness: timedelta = LATENESS) -> int:
    """Write every visit closed at ``now`` not written yet, and roll up every day
    closed since; returns how many visits the windows built now hold."""
    target = now.astimezone(timezone.utc).replace(second=0, microsecond=0) - GAP - lateness
    since = watermark(store) or _first_event_day(store)
    written = 0
    while since is not None and since < target:
        until = min(target, day_start(since, UTC) + DAY)
        written += _build_window(store, since, until)
        since = until
    roll_up_closed_days(store)
    return written


def watermark(store: Store) -> datetime | None:
    (until,), = store.rows("SELECT max(until) FROM beacon.visit_builds")
    return until.replace(tzinfo=timezone.utc) if until.year > 1970 else None


def _first_event_day(store: Store) -> datetime | None:
    (first,), = store.rows("SELECT min(ts) FROM beacon.events")
    return day_start(first.replace(tzinfo=timezone.utc), UTC) if first.year > 1970 else None


def _build_window(store: Store, since: datetime, until: datetime) -> int:
    """Write the visits whose last event is in [since, until), within one UTC day."""
    params = Params()
    lo, hi = params.time(since), params.time(until)
    columns = ", ".join(VISIT_FIELDS)
    seen = f"SELECT site, {VISITOR_KEY} FROM beacon.events WHERE ts >= {lo} AND ts < {hi} AND {COUNTED}"
    whole_days = f"toDate(ts) = toDate({lo}) AND (site, {VISITOR_KEY}) IN ({seen})"
    stored = f"FROM beacon.visits WHERE toDate(start) = toDate({lo}) AND last >= {lo} AND last < {hi}"
    token = f"visits:{epoch_ms(since)}:{epoch_ms(until)}"  # digits only: safe in SQL text
    store.command(
        f"INSERT INTO beacon.visits ({columns}) SETTINGS insert_deduplication_token = '{token}'\n"
        f"SELECT {columns} FROM ({visits_from_events(whole_days)})\n"
        f"WHERE last >= {lo} AND last < {hi} AND (site, visitor, start) NOT IN (SELECT site, visitor, start {stored})",
        params.values,
    )
    (visits,), = store.rows(f"SELECT count() {stored}", params.values)
    store.command(
        "INSERT INTO beacon.visit_builds (since, until, visits) VALUES "
        "(fromUnixTimestamp64Milli({s:Int64}, 'UTC'), fromUnixTimestamp64Milli({u:Int64}, 'UTC'), {n:UInt64})",
        {"s": epoch_ms(since), "u": epoch_ms(until), "n": visits},
    )
    return visits


# --- daily roll-ups --------------------------------------------------------------------------


def roll_up_closed_days(store: Store) -> list[date]:
    """Roll up every day whose visits are all written and that is not rolled up yet."""
    mark = watermark(store)
    if mark is None:
        return []
    (last_rolled,), = store.rows("SELECT max(day) FROM beacon.stats_days FINAL")
    if last_rolled.year > 1970:
        day = last_rolled + DAY
    else:  # the first roll-up: from the first day with events (a scan of ts, once)
        first_event = _first_event_day(store)
        if first_event is None:
            return []
        day = first_event.date()
    done = []
    while datetime.combine(day + DAY, datetime.min.time(), timezone.utc) <= mark:
        roll_up_day(store, day)
        done.append(day)
        day += DAY
    return done


_VISIT_DIMENSIONS = [("", "''", "''")] + [
    (p.name, p.column, CATALOGUE[p.parent].column if p.parent else "''")
    for p in CATALOGUE.values() if p.kind == "visit"
]
_DIMENSIONS = ", ".join(f"('{name}', {column}, {parent})" for name, column, parent in _VISIT_DIMENSIONS)
_TARGET = ("INSERT INTO beacon.stats_daily (site, dim, day, value, parent, visitors, pv_visitors, visits, bounces, "
           "duration, pageviews, events, entry_visits, entry_bounces)\n")

# One statement per kind of row; {d} is the day. Visit properties and the totals
# (dim ''), from the visits that started that day:
_BY_VISIT = _TARGET + f"""SELECT site, d.1 AS dim, toDate(start) AS day, d.2 AS value, d.3 AS parent,
    uniqExact(visitor), 0, count(), sum(is_bounce), sum(duration), sum(pageviews), sum(events), 0, 0
FROM beacon.visits ARRAY JOIN [{_DIMENSIONS}] AS d
WHERE toDate(start) = {{d:Date}}
GROUP BY site, dim, day, value, parent"""
# Pages, from the visits' page arrays: the visits that had the page and their
# duration, the visits entering on it and their bounces.
_BY_PAGE = _TARGET + """SELECT site, 'event:page', toDate(start) AS day, page, '',
    uniqExact(visitor), uniqExactIf(visitor, page_pv > 0), count(), 0, sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
WHERE toDate(start) = {d:Date}
GROUP BY site, day, page"""
# Event names and hostnames, from the events.
_BY_EVENT = _TARGET + f"""SELECT site, d.1 AS dim, toDate(ts) AS day, d.2 AS value, '',
    uniqExact({VISITOR_KEY}), 0, 0, 0, 0, countIf(type = 'pageview'), count(), 0, 0
FROM beacon.events
ARRAY JOIN [('event:name', if(type = 'pageview', 'pageview', name)), ('event:hostname', toString(hostname))] AS d
WHERE toDate(ts) = {{d:Date}} AND {COUNTED}
GROUP BY site, dim, day, value"""
# Props: each key the site's events had that day, with "(none)" for the events without it
# (only site is in both sides of the join).
_BY_PROP = _TARGET + f"""SELECT e.site, concat('event:props:', key) AS dim, toDate(ts) AS day,
    if(mapContains(props, key), props[key], '(none)') AS value, '',
    uniqExact({VISITOR_KEY}), 0, 0, 0, 0, countIf(type = 'pageview'), count(), 0, 0
FROM beacon.events AS e
INNER JOIN (SELECT site, groupUniqArray(arrayJoin(mapKeys(props))) AS keys FROM beacon.events
            WHERE toDate(ts) = {{d:Date}} AND {COUNTED} GROUP BY site) AS k ON e.site = k.site
ARRAY JOIN k.keys AS key
WHERE toDate(ts) = {{d:Date}} AND {COUNTED}
GROUP BY e.site, dim, day, value"""


# Filtered breakdowns (beacon.stats_pairs): each pair of a filtered property (f) and a
# broken-down one (d), as a visit query computes it (queries/parts.py: visit_part).
_PAIR_TARGET = ("INSERT INTO beacon.stats_pairs (site, fdim, fvalue, dim, day, value, parent, visitors, visits, "
                "bounces, duration, pageviews, events, entry_visits, entry_bounces)\n")


# The visit properties rolled up in pairs (the page is paired too: the page arrays).
_PAIRED = ", ".join(f"('{p.name}', {p.column})" for p in CATALOGUE.values() if p.paired and p.kind == "visit")
# A visit property under a visit property's value.
_VISIT_UNDER_VISIT = _PAIR_TARGET + f"""SELECT site, f.1 AS fdim, f.2 AS fvalue, d.1 AS dim, toDate(start) AS day,
    d.2 AS value, '', uniqExact(visitor), count(), sum(is_bounce), sum(duration), sum(pageviews), sum(events), 0, 0
FROM beacon.visits ARRAY JOIN [{_PAIRED}] AS f ARRAY JOIN [{_PAIRED}] AS d
WHERE toDate(start) = {{d:Date}} AND fdim != dim
GROUP BY site, fdim, fvalue, dim, day, value"""
# Pages under a visit property's value: the visits that had the page.
_PAGE_UNDER_VISIT = _PAIR_TARGET + f"""SELECT site, f.1 AS fdim, f.2 AS fvalue, 'event:page', toDate(start) AS day,
    page, '', uniqExact(visitor), count(), 0, sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN [{_PAIRED}] AS f
ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
WHERE toDate(start) = {{d:Date}}
GROUP BY site, fdim, fvalue, day, page"""
# A visit property under a page: the visits that had the page; their pageviews and
# events on it; the visits entering on it and their bounces.
_VISIT_UNDER_PAGE = _PAIR_TARGET + f"""SELECT site, 'event:page', page, d.1 AS dim, toDate(start) AS day,
    d.2 AS value, '', uniqExact(visitor), count(), sum(is_bounce), sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
ARRAY JOIN [{_PAIRED}] AS d
WHERE toDate(start) = {{d:Date}}
GROUP BY site, page, dim, day, value"""
_ROLL_UPS = {"stats_daily": (_BY_VISIT, _BY_PAGE, _BY_EVENT, _BY_PROP),
             "stats_pairs": (_VISIT_UNDER_VISIT, _PAGE_UNDER_VISIT, _VISIT_UNDER_PAGE)}


def roll_up_day(store: Store, day: date) -> int:
    """Write a closed day's rows to beacon.stats_daily and beacon.stats_pairs, then list
    the day; returns the rows written."""
    rows = 0
    for table, statements in _ROLL_UPS.items():
        (left,), = store.rows(f"SELECT count() FROM beacon.{table} WHERE day = {{d:Date}}", {"d": day})
        if left:  # a roll-up of this day died before listing it
            store.command(f"DELETE FROM {store.mutable(table)} WHERE day = {{d:Date}}", {"d": day})
        for statement in statements:
            store.command(statement, {"d": day})
        (written,), = store.rows(f"SELECT count() FROM beacon.{table} WHERE day = {{d:Date}}", {"d": day})
        rows += written
    store.command("INSERT INTO beacon.stats_days (day, rows) VALUES ({d:Date}, {n:UInt64})", {"d": day, "n": rows})
    return rows


# --- the builder's clock ------------------------------------------------------------------------

# Seconds the wall clock may gain on the monotonic one between two rounds without
# counting as a step (NTP slewing is at most 0.05 %: 30 ms a minute).
STEP_TOLERANCE = 5.0


class BuildClock:
    """The time ``VisitBuilder`` closes visits by: the wall clock, read each round,
    unless it stepped forward.

    Between two rounds it advances by the monotonic time elapsed at most (plus
    ``tolerance``); when the wall is further ahead, it keeps to the elapsed time and
    logs the step. A backward step is followed: visits close later and the watermark
    stays where it is. A wall that stays ahead for longer than ``hold`` (30 minutes
    plus the lateness) is accepted: the clock was wrong before and was corrected.
    Not thread-safe: one builder thread reads it.
    """

    def __init__(self, hold: timedelta, wall: Callable[[], float] = wall_clock.now,
                 monotonic: Callable[[], float] = wall_clock.monotonic, tolerance: float = STEP_TOLERANCE):
        self.hold = hold.total_seconds()
        self.wall = wall
        self.monotonic = monotonic
        self.tolerance = tolerance
        self._time: float | None = None  # what the last reading returned (epoch seconds)
        self._read_at = 0.0  # the monotonic time of that reading
        self._ahead_since: float | None = None  # the monotonic time the wall was first seen ahead

    def now(self) -> datetime:
        wall, read_at = self.wall(), self.monotonic()
        if self._time is None:  # the first round: nothing to check the wall against
            trusted = wall
        else:
            trusted = self._checked(wall, self._time + (read_at - self._read_at), read_at)
        self._time, self._read_at = trusted, read_at
        return datetime.fromtimestamp(trusted, timezone.utc)

    def _checked(self, wall: float, elapsed_time: float, read_at: float) -> float:
        """The wall, or ``elapsed_time`` (the last reading plus the monotonic time since)
        while the wall is ahead of it and has not been for longer than the hold."""
        if wall <= elapsed_time + self.tolerance:
            if self._ahead_since is not None:
                log.info("wall clock back in line with the elapsed time",
                         extra={"held_s": round(read_at - self._ahead_since)})
                self._ahead_since = None
            return wall
        if self._ahead_since is None:
            self._ahead_since = read_at
            log.warning("wall clock stepped forward; closing visits by the elapsed time",
                        extra={"step_s": round(wall - elapsed_time), "hold_s": round(self.hold)})
            return elapsed_time
        # By the end of the hold, the elapsed time has closed every visit whose last event
        # came before the step, as the old clock would have; the beacons since are stamped
        # after the step by the new clock, so taking it from now on closes none early.
        if read_at - self._ahead_since > self.hold:
            log.warning("wall clock step accepted", extra={"step_s": round(wall - elapsed_time),
                                                            "held_s": round(read_at - self._ahead_since)})
            self._ahead_since = None
            return wall
        return elapsed_time


class VisitBuilder:
    """Runs ``build_once`` every ``interval`` seconds in a thread."""

    name = "visit-builder"

    def __init__(self, store: Store, interval: float = 60.0, lateness: timedelta = LATENESS,
                 clock: Callable[[], float] = wall_clock.now,
                 monotonic: Callable[[], float] = wall_clock.monotonic):
        self.store = store
        self.interval = interval
        self.lateness = lateness
        self.clock = BuildClock(GAP + lateness, clock, monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def build_once(self) -> int:
        """One round: write the visits closed by the builder's clock; returns how many
        the windows built hold. Not to be called while the thread runs."""
        return build_closed_visits(self.store, self.clock.now(), self.lateness)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                self.build_once()
            except Exception:
                log.exception("building visits failed; trying again at the next run")
            if self._stop.wait(self.interval):
                return
