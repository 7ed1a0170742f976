"""A site's days on the read side: each site has a time zone, and its days, hours
and months are cut there (``common.zones`` defines a local day's bounds). Instants
stay UTC everywhere; these turn local days into the UTC instants that bound them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from common import zones
from common.zones import UTC, local_date, start_of
from queries.model import QueryError

__all__ = ["UTC", "local_date", "start_of", "zone", "zone_sql", "day_start", "day_end", "whole_days", "hours_align"]


def zone(name: str) -> ZoneInfo:
    try:
        return zones.zone(name)
    except ValueError as exc:
        raise QueryError(str(exc)) from exc


def zone_sql(name: str) -> str:
    """A zone as a ClickHouse string literal (its functions take the zone as a
    constant): only tz database names, whose characters need no escaping, get here."""
    zone(name)
    return f"'{name}'"


def day_start(moment: datetime, name: str) -> datetime:
    """The UTC instant the local day of ``moment`` starts."""
    return start_of(local_date(moment, name), name)


def day_end(moment: datetime, name: str) -> datetime:
    """The end of the local day of the instant just before ``moment``."""
    return start_of(local_date(moment - timedelta(milliseconds=1), name) + timedelta(days=1), name)


def whole_days(start: datetime, end: datetime, name: str) -> list[date]:
    """The local days that lie wholly in [start, end)."""
    first = local_date(start, name)
    if start_of(first, name) != start:
        first += timedelta(days=1)
    days = []
    while first < date.max and start_of(first + timedelta(days=1), name) <= end:  # no day after 9999-12-31
        days.append(first)
        first += timedelta(days=1)
    return days


def hours_align(lo: datetime, hi: datetime, name: str) -> bool:
    """Whether [lo, hi) is whole UTC hours that are each within one local hour: the
    zone's offset is whole hours throughout (not +05:45, nor Lord Howe's +10:30), so
    rows of UTC hours (beacon.events_hourly) fall into local hours and days. The
    offset is sampled daily: a zone keeps an offset for months."""
    if lo.timestamp() % 3600 or hi.timestamp() % 3600:
        return False
    tz, at = zone(name), lo
    while at < hi:
        if at.astimezone(tz).utcoffset().total_seconds() % 3600:
            return False
        at += timedelta(days=1)
    return not (hi - timedelta(milliseconds=1)).astimezone(tz).utcoffset().total_seconds() % 3600
