"""The aggregate: each metric over the whole period (``/api/v1/stats/aggregate``)."""

from __future__ import annotations

from dataclasses import replace

from queries.engine import run
from queries.imported import settled
from queries.metrics import Value, values
from queries.model import StatsQuery
from queries.parts import SUMS
from queries.planner import Plan, make_plan
from storage.clickhouse import Store


def aggregate(store: Store, q: StatsQuery) -> dict[str, Value]:
    plan = make_plan(q)
    rows = run(store, plan)
    sums = rows[0].sums if rows else dict.fromkeys(SUMS, 0)
    base = _base_visitors(store, plan) if plan.needs.asks_base else None
    return values(q.metrics, sums, plan.needs.page_scoped, base, "aggregate")


def _base_visitors(store: Store, plan: Plan) -> int:
    """conversion_rate's base: the visitors with goal (and props) filters left out."""
    rows = run(store, make_plan(without_goal_filters(settled(store, plan))))
    return rows[0].sums["visitors"] if rows else 0


def without_goal_filters(q: StatsQuery) -> StatsQuery:
    """The same question asking only visitors, without goal (and props) filters: the
    base a conversion rate divides by. It asks imports when ``q`` does: pass a question
    whose imports are settled (``queries.imported.settled``), so that both or neither add them."""
    kept = tuple(f for f in q.filters if f.prop != "event:goal" and not f.prop.startswith("event:props:"))
    return replace(q, filters=kept, metrics=("visitors",), property=None, interval=None)
