"""Time zones: a site's days are cut in its IANA zone (``beacon sites add --timezone``).

One definition of a local day's bounds, for the visitor hash (``streams.visitor``:
salted per local day), the visit builder and the read side (``queries.days``). A
local day is 23, 24 or 25 hours long; it starts at the first instant whose local
date is that day (where midnight does not exist, when the clock jumps past it).
Every UTC offset, and every change of one, is a whole quarter hour.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

UTC = "UTC"
QUARTER_HOUR = timedelta(minutes=15)
_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The zone of a tz database name; ValueError for anything else."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"not a time zone: {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ValueError, OSError) as exc:
        raise ValueError(f"not a time zone: {name[:64]!r}") from exc


def local_date(moment: datetime, name: str) -> date:
    return moment.astimezone(zone(name)).date()


def start_of(day: date, name: str) -> datetime:
    """The UTC instant the local ``day`` starts."""
    instant = datetime.combine(day, time(), zone(name)).astimezone(timezone.utc)
    if instant.astimezone(zone(name)).date() != day:  # midnight fell in a gap or a fold
        instant -= 2 * timedelta(hours=1)
        while instant.astimezone(zone(name)).date() < day:
            instant += QUARTER_HOUR
    return instant
