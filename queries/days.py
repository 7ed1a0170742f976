"""A site's days: each site has a time zone (``beacon sites add --timezone``), and
its days, hours and months are cut there. Instants stay UTC everywhere; this module
turns local days into the UTC instants that bound them.

A local day is 23, 24 or 25 hours long (daylight saving time); its first instant is
the first instant whose local date is that day (where midnight does not exist, the
day starts when the clock jumps past it).
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from queries.model import QueryError

UTC = "UTC"
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    if not _ZONE_NAME.fullmatch(name):
        raise QueryError(f"not a time zone: {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ValueError, OSError) as exc:
        raise QueryError(f"not a time zone: {name[:64]!r}") from exc


def zone_sql(name: str) -> str:
    """A zone as a ClickHouse string literal (its functions take the zone as a
    constant): only tz database names, whose characters need no escaping, get here."""
    zone(name)
    return f"'{name}'"


def local_date(moment: datetime, name: str) -> date:
    return moment.astimezone(zone(name)).date()


def start_of(day: date, name: str) -> datetime:
    """The UTC instant the local ``day`` starts."""
    local = datetime.combine(day, time(), zone(name))
    instant = local.astimezone(timezone.utc)
    if instant.astimezone(zone(name)).date() != day:  # midnight fell in a gap: the day starts after it
        instant = _first_instant_of(day, name, instant)
    return instant


def _first_instant_of(day: date, name: str, guess: datetime) -> datetime:
    step = timedelta(minutes=15)  # offsets and their changes are whole quarter hours
    at = guess - 2 * timedelta(hours=1)
    while at.astimezone(zone(name)).date() < day:
        at += step
    return at


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
    while start_of(first + timedelta(days=1), name) <= end:
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
