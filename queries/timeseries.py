"""The timeseries: metrics per hour, day or month, every bucket of the period listed
(``/api/v1/stats/timeseries``). Buckets are named as Plausible names them:
``YYYY-MM-DD HH:00:00``, ``YYYY-MM-DD``, ``YYYY-MM-01`` (UTC)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from queries.aggregate import without_goal_filters
from queries.engine import resolve_goals, run
from queries.metrics import values
from queries.model import INTERVALS, QueryError, StatsQuery
from queries.parts import SUMS, Shape
from queries.planner import needs
from storage.clickhouse import Store


def timeseries(store: Store, q: StatsQuery) -> list[dict]:
    if q.interval not in INTERVALS:
        raise QueryError(f"interval must be one of {', '.join(INTERVALS)}")
    n = needs(q)
    shape = Shape(interval=q.interval)
    found = {row.bucket: row.sums for row in run(store, n, shape, resolve_goals(store, n))}
    bases = _base_visitors(store, q, shape)
    empty = dict.fromkeys(SUMS, 0)
    return [
        {"date": label, **values(q.metrics, found.get(label, empty), n.page_scoped, bases.get(label), "timeseries")}
        for label in buckets(n.query.start, n.query.end, q.interval)
    ]


def _base_visitors(store: Store, q: StatsQuery, shape: Shape) -> dict[str, int]:
    if "conversion_rate" not in q.metrics:
        return {}
    base = replace(without_goal_filters(q), interval=q.interval)
    n = needs(base)
    return {row.bucket: row.sums["visitors"] for row in run(store, n, shape, resolve_goals(store, n))}


def buckets(start: datetime, end: datetime, interval: str) -> list[str]:
    """The labels of every bucket that [start, end) touches."""
    labels = []
    at = _bucket_start(start, interval)
    while at < end:
        labels.append(_label(at, interval))
        try:
            at = _next(at, interval)
        except OverflowError:  # the bucket of 9999-12-31, the calendar's last
            break
    return labels


def _bucket_start(moment: datetime, interval: str) -> datetime:
    if interval == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if interval == "month" else day


def _next(moment: datetime, interval: str) -> datetime:
    if interval == "hour":
        return moment + timedelta(hours=1)
    if interval == "date":
        return moment + timedelta(days=1)
    return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)


def _label(moment: datetime, interval: str) -> str:
    if interval == "hour":
        return moment.strftime("%Y-%m-%d %H:00:00")
    return moment.strftime("%Y-%m-01" if interval == "month" else "%Y-%m-%d")
