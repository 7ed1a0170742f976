"""The visit builder: writes each visit to beacon.visits once it is closed, and each
closed day's figures to beacon.stats_daily (``rollups.daily``). It runs in the
process that owns the store (``VisitBuilder``, every minute), or by hand
(``build_closed_visits``). Visits and days are cut in each site's time zone
(``rollups.zones``).

Why a builder, not a materialized view: a view sees one INSERT's rows, while one
visitor's events arrive in different batches, HTTP processes or Kafka partitions,
and out of order. The builder reads the events once no more can join a visit.

* A visit is closed when its last event is older than 30 minutes (the gap that
  ends a visit) plus ``lateness`` (how late an event may be stored after its time:
  batching, Kafka lag). An event stored later than that is counted by the event
  figures but misses its visit (see docs/analytics.md).
* Progress is a watermark: every visit whose last event is before it is written.
  Each run writes the visits whose last event lies in [watermark, new watermark)
  (whole minutes, one window per UTC day at most), for each zone from the events of
  the local days the window touches (a visit never spans two local days), then
  records the window in beacon.visit_builds. A window run again (a crash
  between the two writes) writes only the visits not yet there (the INSERT leaves
  out those already stored), and the same window's INSERT carries a deduplication
  token, so two builders racing on it store it once.
* A local day is rolled up once the watermark has passed its end: every visit of
  it is then written (``rollups.daily``).

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
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from common import clock as wall_clock
from queries.days import UTC, day_end, day_start
from queries.sessions import BUILT_FIELDS, COUNTED, GAP_MS, VISITOR_KEY, visits_from_events
from queries.sql import Params, epoch_ms
from rollups.daily import roll_up_closed_days
from rollups.sequences import sequence_older_visits
from rollups.zones import ZoneGroup, zone_groups
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
    if since is None or since >= target:
        roll_up_closed_days(store, watermark(store))
        return 0
    groups = zone_groups(store)
    busy = _days_with_events(store, since, target)
    written = 0
    while since < target:
        until = min(target, day_start(since, UTC) + DAY)
        if since.date() in busy:
            written += _build_window(store, since, until, groups)
        else:  # no event closes a visit here, nor on the idle days after: one record for them all
            while until < target and until.date() not in busy:
                until = min(target, until + DAY)
            _record_window(store, since, until, 0)
        since = until
    roll_up_closed_days(store, watermark(store))
    return written


def watermark(store: Store) -> datetime | None:
    # A number, not a DateTime: through a server's control socket (JSON) it arrives as it left.
    ((until_ms,),) = store.rows("SELECT toUnixTimestamp64Milli(max(until)) FROM beacon.visit_builds")
    return datetime.fromtimestamp(until_ms / 1000, timezone.utc) if until_ms else None


def _first_event_day(store: Store) -> datetime | None:
    ((first,),) = store.rows("SELECT min(ts) FROM beacon.events")
    return day_start(first.replace(tzinfo=timezone.utc), UTC) if first.year > 1970 else None


def _days_with_events(store: Store, since: datetime, until: datetime) -> set[date]:
    """The UTC days with events in [since, until), in one scan of the time column."""
    params = Params()
    rows = store.rows(
        f"SELECT DISTINCT toString(toDate(ts)) FROM beacon.events "
        f"WHERE ts >= {params.time(since)} AND ts < {params.time(until)}",
        params.values,
    )
    return {date.fromisoformat(day) for (day,) in rows}


def _build_window(store: Store, since: datetime, until: datetime, groups: list[ZoneGroup]) -> int:
    """Write the visits whose last event is in [since, until) (within one UTC day), one
    zone at a time, and record the window."""
    visits = sum(_build_zone_window(store, since, until, group) for group in groups)
    _record_window(store, since, until, visits)
    return visits


def _record_window(store: Store, since: datetime, until: datetime, visits: int) -> None:
    store.command(
        "INSERT INTO beacon.visit_builds (since, until, visits) VALUES "
        "(fromUnixTimestamp64Milli({s:Int64}, 'UTC'), fromUnixTimestamp64Milli({u:Int64}, 'UTC'), {n:UInt64})",
        {"s": epoch_ms(since), "u": epoch_ms(until), "n": visits},
    )


def _build_zone_window(store: Store, since: datetime, until: datetime, group: ZoneGroup) -> int:
    """The window's visits of the group's sites, cut from the events of the local days
    it touches (of the visitors seen in it)."""
    params = Params()
    sites = group.bound(params)
    lo, hi = params.time(since), params.time(until)
    first, end = params.time(day_start(since, group.zone)), params.time(day_end(until, group.zone))
    columns = ", ".join(BUILT_FIELDS)
    seen = f"SELECT site, {VISITOR_KEY} FROM beacon.events WHERE {sites} AND ts >= {lo} AND ts < {hi} AND {COUNTED}"
    whole_days = f"{sites} AND ts >= {first} AND ts < {end} AND (site, {VISITOR_KEY}) IN ({seen})"
    stored = f"FROM beacon.visits WHERE {sites} AND start >= {first} AND last >= {lo} AND last < {hi}"
    # Digits and a zone name only: safe in SQL text.
    token = f"visits:{epoch_ms(since)}:{epoch_ms(until)}:{group.zone}"
    store.command(
        f"INSERT INTO beacon.visits ({columns}) SETTINGS insert_deduplication_token = '{token}'\n"
        f"SELECT {columns} FROM ({visits_from_events(whole_days, zone=group.zone, sequences=True)})\n"
        f"WHERE last >= {lo} AND last < {hi} AND (site, visitor, start) NOT IN (SELECT site, visitor, start {stored})",
        params.values,
    )
    ((visits,),) = store.rows(f"SELECT count() {stored}", params.values)
    return visits


# --- the builder's clock ------------------------------------------------------------------------

# How long one round may spend giving older visits their sequences (rollups.sequences):
# an upgraded store's history is done over a few rounds, and new visits wait no longer.
SEQUENCING_SECONDS = 20.0

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

    def __init__(
        self,
        hold: timedelta,
        wall: Callable[[], float] = wall_clock.now,
        monotonic: Callable[[], float] = wall_clock.monotonic,
        tolerance: float = STEP_TOLERANCE,
    ):
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
                log.info(
                    "wall clock back in line with the elapsed time",
                    extra={"held_s": round(read_at - self._ahead_since)},
                )
                self._ahead_since = None
            return wall
        if self._ahead_since is None:
            self._ahead_since = read_at
            log.warning(
                "wall clock stepped forward; closing visits by the elapsed time",
                extra={"step_s": round(wall - elapsed_time), "hold_s": round(self.hold)},
            )
            return elapsed_time
        # By the end of the hold, the elapsed time has closed every visit whose last event
        # came before the step, as the old clock would have; the beacons since are stamped
        # after the step by the new clock, so taking it from now on closes none early.
        if read_at - self._ahead_since > self.hold:
            log.warning(
                "wall clock step accepted",
                extra={"step_s": round(wall - elapsed_time), "held_s": round(read_at - self._ahead_since)},
            )
            self._ahead_since = None
            return wall
        return elapsed_time


class VisitBuilder:
    """Runs ``build_once`` every ``interval`` seconds in a thread."""

    name = "visit-builder"

    def __init__(
        self,
        store: Store,
        interval: float = 60.0,
        lateness: timedelta = LATENESS,
        clock: Callable[[], float] = wall_clock.now,
        monotonic: Callable[[], float] = wall_clock.monotonic,
    ):
        self.store = store
        self.interval = interval
        self.lateness = lateness
        self.clock = BuildClock(GAP + lateness, clock, monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sequences_missing = True  # until a round finds no older visit without its sequence

    def build_once(self) -> int:
        """One round: write the visits closed by the builder's clock, then give older
        visits their sequences for a while; returns how many visits the windows built
        hold. Not to be called while the thread runs."""
        written = build_closed_visits(self.store, self.clock.now(), self.lateness)
        deadline = wall_clock.monotonic() + SEQUENCING_SECONDS
        while self._sequences_missing and wall_clock.monotonic() < deadline:
            self._sequences_missing = sequence_older_visits(self.store)
        return written

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
