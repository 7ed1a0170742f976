"""Sequences for the visits built before migration 0025: cut again from the raw events
still held, so that funnels read them from beacon.visits too.

Migration 0025 records the builder's watermark of that moment in
beacon.visit_sequences (``missing_before``): every visit whose last event is before
it was written without its sequence, and funnels read those visits from the raw
events. Walking back from there, a week at a time, each step re-cuts the visits
whose last event lies in the week (``visits_from_events``, the builder's own cut,
in each zone), writes them with their sequences, deletes the old rows, and then
moves ``missing_before`` back to the week's start, so a funnel never misses them.

It stops at the first local day whose events may be gone (``raw_retention_days``'
TTL, which deletes the oldest events first): the visits before it keep empty
sequences, and funnels keep reading those days' events, of which none or only some
are left, as the raw path does. Where no event is gone yet (the oldest built visit
starts after the oldest event), every visit gets its sequence.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from queries.days import day_end, day_start
from queries.sessions import BUILT_FIELDS, visits_from_events
from queries.sql import Params, epoch_ms
from rollups.zones import ZoneGroup, zone_groups
from storage.clickhouse import Store

log = logging.getLogger("beacon.visits")

STEP = timedelta(days=7)


def missing_before(store: Store) -> datetime:
    """Built visits whose last event is before this have no sequence (the epoch: none)."""
    ((mark_ms,),) = store.rows("SELECT toUnixTimestamp64Milli(min(missing_before)) FROM beacon.visit_sequences")
    return _instant(mark_ms or 0)


def sequence_older_visits(store: Store) -> bool:
    """One step back (at most ``STEP``); False when there is nothing left to do."""
    hi = missing_before(store)
    if hi.timestamp() == 0:  # nothing was built without a sequence (a store made with 0025)
        return False
    groups = zone_groups(store)
    floor = _held_from(store, groups)
    if floor is None or hi <= floor:
        return False
    lo = max(hi - STEP, floor)
    for group in groups:
        _sequence_zone(store, group, lo, hi)
    store.command(
        "INSERT INTO beacon.visit_sequences (missing_before) VALUES (fromUnixTimestamp64Milli({m:Int64}, 'UTC'))",
        {"m": epoch_ms(lo)},
    )
    log.info("visits given their sequences", extra={"since": lo.isoformat(), "until": hi.isoformat()})
    return lo > floor


def _held_from(store: Store, groups: list[ZoneGroup]) -> datetime | None:
    """From when every built visit's events are held (None: no visit, or no event): the
    oldest visit's start when no event is gone, else the start of the latest zone's
    first local day after the oldest event held."""
    ((oldest_event, oldest_visit, visits),) = store.rows(
        "SELECT (SELECT toUnixTimestamp64Milli(min(ts)) FROM beacon.events),"
        " (SELECT toUnixTimestamp64Milli(min(start)) FROM beacon.visits), (SELECT count() FROM beacon.visits)"
    )
    if not visits or not oldest_event:  # without events, deleting visits to cut them again would lose them
        return None
    if oldest_visit >= oldest_event:
        return _instant(oldest_visit)
    oldest = _instant(oldest_event)
    return max(day_end(oldest + timedelta(milliseconds=1), group.zone) for group in groups)


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _sequence_zone(store: Store, group: ZoneGroup, lo: datetime, hi: datetime) -> None:
    """The group's visits whose last event is in [lo, hi), cut again with their sequences
    in place of the rows without."""
    params = Params()
    sites = group.bound(params)
    lo_p, hi_p = params.time(lo), params.time(hi)
    events = (
        f"{sites} AND ts >= {params.time(day_start(lo, group.zone))} AND ts < {params.time(day_end(hi, group.zone))}"
    )
    in_range = f"{sites} AND last >= {lo_p} AND last < {hi_p}"
    columns = ", ".join(BUILT_FIELDS)
    # Run again after a crash between the two statements: the visits already cut again are left out.
    store.command(
        f"INSERT INTO beacon.visits ({columns})\n"
        f"SELECT {columns} FROM ({visits_from_events(events, zone=group.zone, sequences=True)})\n"
        f"WHERE last >= {lo_p} AND last < {hi_p} AND (site, visitor, start) NOT IN "
        f"(SELECT site, visitor, start FROM beacon.visits WHERE {in_range} AND notEmpty(sequence_names))",
        params.values,
    )
    store.command(f"DELETE FROM {store.mutable('visits')} WHERE {in_range} AND empty(sequence_names)", params.values)
