"""What the read side is asked: a ``StatsQuery`` (site, time range, metrics, filters,
and a breakdown property or a timeseries interval), in Plausible's v1 vocabulary.
The metrics it may name are declared in ``queries.metrics``, the properties in
``queries.properties``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

INTERVALS = ("hour", "date", "month")
OPERATORS = ("==", "!=", "~")


class QueryError(ValueError):
    """A combination the read side refuses; the API answers 400 with its message."""


@dataclass(frozen=True)
class Filter:
    prop: str  # e.g. "event:page", "visit:source", "event:props:plan", "event:goal"
    op: str  # "==" | "!=" | "~" (contains)
    values: tuple[str, ...]  # alternatives ("|" in the API)


@dataclass(frozen=True)
class StatsQuery:
    site: str
    start: datetime  # an instant, inclusive (a local midnight for whole days)
    end: datetime  # an instant, exclusive
    metrics: tuple[str, ...]
    filters: tuple[Filter, ...] = ()
    property: str | None = None  # breakdown property
    interval: str | None = None  # timeseries bucket: hour | date | month
    limit: int = 100
    page: int = 1
    source: str | None = None  # force "aggregates" or "events"; None: the planner decides
    timezone: str = "UTC"  # the site's: its days, hours and months are cut there
