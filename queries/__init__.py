"""The read side: where a beacon is read. Visits, aggregates and the stats queries.

    aggregate(store, q)   → {metric: value}
    timeseries(store, q)  → [{"date": …, metric: value}, …] (every bucket)
    breakdown(store, q)   → [{key: value, metric: value}, …] (a page of rows)
    realtime_visitors(store, site, now) → int
    plan(q)               → "aggregates" | "events"
    make_plan(q)          → Plan: the path, the reason and the rows, decided once

``q`` is a ``queries.model.StatsQuery``; a combination the read side refuses raises
``QueryError``. A query reads in one direction: the planner decides (``planner``),
the engine puts together the parts it names (``engine``, ``parts``, ``relations``)
as one summing SELECT, and each query kind finishes the rows (``metrics``). Every
metric is declared once in ``queries.metrics``, every property in
``queries.properties``. The visit builder (``rollups``) writes the closed visits
and the daily roll-ups the aggregates path reads. A query with ``imports`` adds the
figures imported from a Plausible archive where they answer it (``imported``;
``plausible_export`` writes the archive). See docs/analytics.md.
"""

from __future__ import annotations

from queries.aggregate import aggregate
from queries.breakdown import breakdown
from queries.model import Filter, QueryError, StatsQuery
from queries.planner import Plan, make_plan, plan
from queries.realtime import realtime_visitors
from queries.timeseries import timeseries

__all__ = [
    "aggregate",
    "breakdown",
    "timeseries",
    "realtime_visitors",
    "plan",
    "make_plan",
    "Plan",
    "Filter",
    "QueryError",
    "StatsQuery",
]
