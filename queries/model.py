"""What the read side is asked: a ``StatsQuery`` (site, time range, metrics, filters,
and a breakdown property or a timeseries interval), in Plausible's v1 vocabulary.
The metrics it may name are declared in ``queries.metrics``, the properties in
``queries.properties``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

INTERVALS = ("hour", "date", "week", "month")
# v1's three, and v2's: "!~" contains none, "=~" matches a regular expression (re2),
# "!=~" matches none of them.
OPERATORS = ("==", "!=", "~", "!~", "=~", "!=~")
V1_OPERATORS = OPERATORS[:3]


class QueryError(ValueError):
    """A combination the read side refuses; the API answers 400 with its message."""


@dataclass(frozen=True)
class Filter:
    prop: str  # e.g. "event:page", "visit:source", "event:props:plan", "event:goal"
    op: str  # one of OPERATORS
    values: tuple[str, ...]  # alternatives ("|" in the API)


@dataclass(frozen=True)
class StatsQuery:
    site: str
    start: datetime  # an instant, inclusive (a local midnight for whole days)
    end: datetime  # an instant, exclusive
    metrics: tuple[str, ...]
    filters: tuple[Filter, ...] = ()
    property: str | None = None  # breakdown property
    interval: str | None = None  # timeseries bucket: hour | date | week (from Monday) | month
    limit: int = 100
    page: int = 1
    source: str | None = None  # force "aggregates" or "events"; None: the planner decides
    timezone: str = "UTC"  # the site's: its days, hours and months are cut there
    imports: bool = False  # add the site's imported figures where they answer it (queries.imported)
