"""The breakdown: metrics per value of one property, sorted by the first metric (then
by value), a page at a time (``/api/v1/stats/breakdown``). Each row names its value
as Plausible does (``page``, ``source``, ``country``, ``goal``, a props key…); a
browser version row also names its browser, an OS version row its OS."""

from __future__ import annotations

from dataclasses import replace

from queries.aggregate import without_goal_filters
from queries.engine import run
from queries.goals import resolve_goals
from queries.imported import settled
from queries.metrics import values
from queries.model import Filter, QueryError, StatsQuery
from queries.planner import Plan, make_plan
from queries.properties import find
from storage.clickhouse import Store


def breakdown(store: Store, q: StatsQuery) -> list[dict]:
    if not q.property:
        raise QueryError("a breakdown needs a property")
    if q.limit < 1 or q.page < 1:
        raise QueryError("limit and page must be 1 or more")
    plan = make_plan(q, page=(q.limit, (q.page - 1) * q.limit))
    goals = resolve_goals(store, plan.needs)
    if plan.needs.by_goal and not goals.breakdown:
        return []
    rows = run(store, plan, goals)
    bases = _base_visitors(store, plan, [row.value for row in rows]) if plan.needs.asks_base else {}
    prop = plan.shape.prop
    key, parent_key = prop.key, find(prop.parent).key if prop.parent else None
    results = []
    for row in rows:
        named = {key: row.value} | ({parent_key: row.parent} if parent_key else {})
        base = bases.get("" if plan.needs.by_goal else row.value)
        results.append(named | values(q.metrics, row.sums, plan.needs.page_scoped, base, "breakdown"))
    return results


def _base_visitors(store: Store, plan: Plan, listed: list[str]) -> dict[str, int]:
    """conversion_rate's base per row: the visitors of the row's value without the goal
    filters; in a goal breakdown, the visitors of the whole period."""
    if not listed:
        return {}
    q = plan.needs.query
    base = without_goal_filters(settled(store, plan))
    if not plan.needs.by_goal:
        base = replace(base, property=q.property, filters=base.filters + (Filter(q.property, "==", tuple(listed)),))
    return {row.value: row.sums["visitors"] for row in run(store, make_plan(base))}
