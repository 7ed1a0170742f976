"""A report's figures, read with the Stats API's own query functions (``queries``):
the headline metrics of the period with their change against the period before, and
the top sources, pages and goals. A spike notice's figures: the visitors of the last
hour and where they came. Aggregates only: nothing here reads a visitor's row."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import queries
from queries.metrics import METRICS, Change, Value
from queries.properties import find
from reports.periods import ReportPeriod
from storage.clickhouse import Store

HEADLINE = ("visitors", "pageviews", "bounce_rate", "visit_duration")
TOP = 5
SPIKE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Headline:
    metric: str
    value: Value
    before: Value
    change: Value  # Plausible's change: percent, or points for a rate; None when it has none

    @property
    def label(self) -> str:
        return METRICS[self.metric].label

    @property
    def in_points(self) -> bool:
        return METRICS[self.metric].change is not Change.PERCENT


@dataclass(frozen=True)
class Ranked:
    name: str
    visitors: int


@dataclass(frozen=True)
class Figures:
    site: str
    period: ReportPeriod
    headline: tuple[Headline, ...]
    sources: tuple[Ranked, ...]
    pages: tuple[Ranked, ...]
    goals: tuple[Ranked, ...]


@dataclass(frozen=True)
class SpikeFigures:
    site: str
    since: datetime
    until: datetime
    visitors: int
    sources: tuple[Ranked, ...]
    pages: tuple[Ranked, ...]


def report_figures(store: Store, site: str, period: ReportPeriod) -> Figures:
    q = queries.StatsQuery(site, period.start, period.end, HEADLINE, timezone=period.zone)
    earlier = period.previous()
    now = queries.aggregate(store, q)
    before = queries.aggregate(store, replace(q, start=earlier.start, end=earlier.end))
    headline = tuple(Headline(m, now[m], before[m], METRICS[m].changed(now[m], before[m])) for m in HEADLINE)
    return Figures(
        site,
        period,
        headline,
        top(store, q, "visit:source"),
        top(store, q, "event:page"),
        top(store, q, "event:goal"),
    )


def spike_figures(store: Store, site: str, now: datetime) -> SpikeFigures:
    q = queries.StatsQuery(site, now - SPIKE_WINDOW, now, ("visitors",))
    visitors = int(queries.aggregate(store, q)["visitors"])
    return SpikeFigures(site, q.start, now, visitors, top(store, q, "visit:source", 3), top(store, q, "event:page", 3))


def top(store: Store, q: queries.StatsQuery, prop: str, limit: int = TOP) -> tuple[Ranked, ...]:
    """The first ``limit`` values of ``prop`` by visitors, as the Stats API's breakdown lists them."""
    key = find(prop).key
    rows = queries.breakdown(store, replace(q, metrics=("visitors",), property=prop, limit=limit, page=1))
    return tuple(Ranked(str(row[key]), int(row["visitors"])) for row in rows)
