"""Where visit rows come from, as SQL relations with the columns of beacon.visits:

* ``cut_visits``: cut from the events at query time (the raw path);
* ``built_and_open_visits``: the visits the builder has written (closed: their last
  event is before its watermark) and, cut from the events, those still open.

and what the builder has done so far (``BuildState``): its watermark and the days it
has rolled up. A visit lies within one day of its site's time zone, so "whole
visitor-days" means whole local days of events (``queries.days``).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import date, datetime, timezone

from queries.days import day_end, day_start
from queries.sessions import COUNTED, VISIT_PROPERTIES, VISITOR_KEY, visit_fields, visits_from_events
from queries.sql import Params
from storage.clickhouse import Store


@dataclass(frozen=True)
class BuildState:
    watermark: datetime | None  # every visit whose last event is before it is in beacon.visits
    rolled: dict[str, frozenset[date]]  # per zone, the local days whose figures are in beacon.stats_daily
    engaged: dict[str, frozenset[date]]  # per zone, those whose engagement sums are there too
    with_goals: dict[str, frozenset[date]]  # per zone, those with goal mode's rows (events by visit property, page)
    # built visits whose last event is before this have no sequence yet (rollups.sequences; None: all have)
    unsequenced_before: datetime | None

    def rolled_in(self, zone: str) -> frozenset[date]:
        return self.rolled.get(zone, frozenset())

    def engaged_in(self, zone: str) -> frozenset[date]:
        return self.engaged.get(zone, frozenset())

    def goals_rolled_in(self, zone: str) -> frozenset[date]:
        return self.with_goals.get(zone, frozenset())


# A state read less than this long ago is used again (a dashboard asks several queries
# at once; each read costs a few ms). An older state is still right, only slower: the
# visits written since are cut from the events, the days rolled up since are summed
# from the visits. A write through the store (its count moves) reads it again at once;
# a store that sees every write (the embedded engine, and its control socket) keeps it
# until one, since only the builder's statements change it, and re-reading it every
# second put a 7-40 ms read into one dashboard query in twenty.
STATE_FRESH_SECONDS = 1.0
_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_state(store: Store) -> BuildState:
    writes, now = store.writes(), time.monotonic()
    kept = _states.get(store)
    if kept is not None and kept[0] == writes and (writes is not None or now - kept[1] < STATE_FRESH_SECONDS):
        return kept[2]
    # Numbers and text, not DateTime and Date: through the control socket of a
    # ``serve --workers`` process (JSON) they arrive as they left.
    ((until_ms, days, unsequenced_ms),) = store.rows(
        "SELECT (SELECT toUnixTimestamp64Milli(max(until)) FROM beacon.visit_builds),"
        " (SELECT groupArray((if(zone = '', 'UTC', zone), toString(day), engagement, goals)) FROM beacon.stats_days FINAL),"
        " (SELECT toUnixTimestamp64Milli(min(missing_before)) FROM beacon.visit_sequences)"
    )
    built = _instant(until_ms)
    rolled: dict[str, set[date]] = {}
    engaged: dict[str, set[date]] = {}
    with_goals: dict[str, set[date]] = {}
    for zone, day, with_engagement, goals in days:
        rolled.setdefault(zone, set()).add(date.fromisoformat(day))
        if with_engagement:
            engaged.setdefault(zone, set()).add(date.fromisoformat(day))
        if goals:
            with_goals.setdefault(zone, set()).add(date.fromisoformat(day))
    state = BuildState(built, _frozen(rolled), _frozen(engaged), _frozen(with_goals), _instant(unsequenced_ms))
    _states[store] = (writes, now, state)
    return state


def _instant(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else None


def _frozen(days: dict[str, set[date]]) -> dict[str, frozenset[date]]:
    return {zone: frozenset(d) for zone, d in days.items()}


def cut_visits(
    site: str,
    zone: str,
    lo: datetime,
    hi: datetime,
    params: Params,
    properties: tuple[str, ...],
    page_arrays: bool,
    paths: bool = True,
) -> str:
    """Visits starting in [lo, hi), cut from the events of the (local) days they lie in
    (with the columns ``visits_from_events`` makes of ``properties``, ``page_arrays``, ``paths``)."""
    where = (
        f"site = {params.text(site)} AND ts >= {params.time(day_start(lo, zone))} "
        f"AND ts < {params.time(day_end(hi, zone))}"
    )
    return (
        f"SELECT * FROM ({visits_from_events(where, properties, page_arrays, paths, zone)}) "
        f"WHERE start >= {params.time(lo)} AND start < {params.time(hi)}"
    )


def built_and_open_visits(
    site: str,
    zone: str,
    lo: datetime,
    hi: datetime,
    state: BuildState,
    params: Params,
    properties: tuple[str, ...] = VISIT_PROPERTIES,
    page_arrays: bool = True,
    paths: bool = True,
) -> str:
    """Visits starting in [lo, hi): those written by the builder, and those it has not
    written yet (their last event is at or after its watermark), cut from the events
    of the visitors seen since then. Reading the watermark once for both halves keeps
    them apart even while the builder writes. Only the columns asked for (as
    ``cut_visits``): the cut's SQL grows with each, and so does the time the engine
    takes to plan it (tens of milliseconds with every column)."""
    columns = ", ".join(visit_fields(properties, paths, page_arrays))
    site_p, lo_p, hi_p = params.text(site), params.time(lo), params.time(hi)
    if state.watermark is None:
        return cut_visits(site, zone, lo, hi, params, properties, page_arrays, paths)
    mark = params.time(state.watermark)
    built = (
        f"SELECT {columns} FROM beacon.visits "
        f"WHERE site = {site_p} AND start >= {lo_p} AND start < {hi_p} AND last < {mark}"
    )
    if hi <= day_start(state.watermark, zone):
        return built  # every visit of these days is closed
    open_from = max(day_start(lo, zone), day_start(state.watermark, zone))
    day_hi = params.time(day_end(hi, zone))
    recent = (
        f"SELECT {VISITOR_KEY} FROM beacon.events "
        f"WHERE site = {site_p} AND ts >= {mark} AND ts < {day_hi} AND {COUNTED}"
    )
    where = f"site = {site_p} AND ts >= {params.time(open_from)} AND ts < {day_hi} AND {VISITOR_KEY} IN ({recent})"
    still_open = (
        f"SELECT {columns} FROM ({visits_from_events(where, properties, page_arrays, paths, zone)}) "
        f"WHERE last >= {mark} AND start >= {lo_p} AND start < {hi_p}"
    )
    return f"{built}\nUNION ALL\n{still_open}"
