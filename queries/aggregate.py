"""The aggregate: each metric over the whole period (``/api/v1/stats/aggregate``)."""
from __future__ import annotations

from dataclasses import replace

from queries.engine import resolve_goals, run
from queries.metrics import values
from queries.model import StatsQuery
from queries.parts import SUMS, Shape
from queries.planner import needs
from storage.clickhouse import Store


def aggregate(store: Store, q: StatsQuery) -> dict[str, int | float | None]:
    n = needs(q)
    rows = run(store, n, Shape(), resolve_goals(store, n))
    sums = rows[0].sums if rows else dict.fromkeys(SUMS, 0)
    return values(q.metrics, sums, n.page_scoped, _base_visitors(store, q), "aggregate")


def _base_visitors(store: Store, q: StatsQuery) -> int | None:
    """conversion_rate's base: the visitors with goal (and props) filters left out."""
    if "conversion_rate" not in q.metrics:
        return None
    base = without_goal_filters(q)
    rows = run(store, needs(base), Shape(), resolve_goals(store, needs(base)))
    return rows[0].sums["visitors"] if rows else 0


def without_goal_filters(q: StatsQuery) -> StatsQuery:
    kept = tuple(f for f in q.filters if f.prop != "event:goal" and not f.prop.startswith("event:props:"))
    return replace(q, filters=kept, metrics=("visitors",), property=None, interval=None)
