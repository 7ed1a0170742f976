"""A site moved to another time zone: the days still held raw are cut again in it.

The raw events of the last ``raw_retention_days`` are all there is to cut from: from
the first whole local day of that span on (``first_rezoned_day``), the site's visits
are rebuilt and its days rolled up again in the new zone. The days before keep the
cut they were rolled up in; the site's ``zone_since`` says from when its figures
are in the new zone, and the Stats API and the dashboard say so.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from common.zones import local_date, start_of
from queries.days import day_end
from queries.sessions import BUILT_FIELDS, visits_from_events
from queries.sql import Params
from rollups.daily import list_days, roll_up_day, rolled_days
from rollups.visit_builder import watermark
from rollups.zones import ZoneGroup
from storage.clickhouse import Store

log = logging.getLogger("beacon.rezone")

DAY = timedelta(days=1)
RETENTION_DAYS = 730  # how far back a new zone's group is listed as rolled (the longest any row is kept)


def first_rezoned_day(now: datetime, raw_retention_days: int, zone: str) -> date:
    """The first local day of ``zone`` wholly within the raw events still held."""
    oldest_raw = now - timedelta(days=raw_retention_days)
    day = local_date(oldest_raw, zone)
    return day if start_of(day, zone) >= oldest_raw else day + DAY


def rezone(store: Store, site: str, zone: str, first: date) -> int:
    """Rebuild ``site``'s visits and roll-ups from the local day ``first`` on, in
    ``zone`` (the site's zone already); returns the days rolled up again."""
    mark = watermark(store)
    if mark is None:
        return 0  # nothing built yet: the builder will cut every day in the new zone
    group = ZoneGroup(zone, (site,))
    _keep_older_days(store, group, first)
    _rebuild_visits(store, group, start_of(first, zone), mark)
    for table in ("stats_daily", "stats_pairs"):
        store.command(
            f"DELETE FROM {store.mutable(table)} WHERE site = {{s:String}} AND day >= {{d:Date}}",
            {"s": site, "d": first},
        )
    days, day = 0, first
    while start_of(day + DAY, zone) <= mark:
        roll_up_day(store, day, group)
        days, day = days + 1, day + DAY
    log.info("site re-cut in its new zone", extra={"zone": zone, "from_day": first.isoformat(), "days": days})
    return days


def _keep_older_days(store: Store, group: ZoneGroup, first: date) -> None:
    """A zone no site had before has no rolled-up days: list the days before ``first``,
    so that the builder leaves the site's rows of those days (cut in its old zone, with
    no raw events left to cut again) as they are."""
    if rolled_days(store, group):
        return
    list_days(store, [first - DAY * n for n in range(RETENTION_DAYS, 0, -1)], group)


def _rebuild_visits(store: Store, group: ZoneGroup, since: datetime, mark: datetime) -> None:
    """The site's visits that start at or after ``since`` and end before the watermark,
    cut again in its zone (the later ones are still open: queries cut them)."""
    params = Params()
    site = params.text(group.sites[0])
    lo, mark_p = params.time(since), params.time(mark)
    store.command(f"DELETE FROM {store.mutable('visits')} WHERE site = {site} AND start >= {lo}", params.values)
    columns = ", ".join(BUILT_FIELDS)
    events = f"site = {site} AND ts >= {lo} AND ts < {params.time(day_end(mark, group.zone))}"
    store.command(
        f"INSERT INTO beacon.visits ({columns})\n"
        f"SELECT {columns} FROM ({visits_from_events(events, zone=group.zone, sequences=True)})\n"
        f"WHERE last < {mark_p}",
        params.values,
    )
