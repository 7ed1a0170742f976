"""The breakdown: metrics per value of one property, sorted by the first metric (then
by value), a page at a time (``/api/v1/stats/breakdown``). Each row names its value
as Plausible does (``page``, ``source``, ``country``, ``goal``, a props key…); a
browser version row also names its browser, an OS version row its OS."""
from __future__ import annotations

from dataclasses import replace

from queries.aggregate import without_goal_filters
from queries.engine import Page, resolve_goals, run
from queries.metrics import values
from queries.model import Filter, QueryError, StatsQuery
from queries.parts import Shape
from queries.planner import needs
from queries.properties import find
from storage.clickhouse import Store


def breakdown(store: Store, q: StatsQuery) -> list[dict]:
    if not q.property:
        raise QueryError("a breakdown needs a property")
    if q.limit < 1 or q.page < 1:
        raise QueryError("limit and page must be 1 or more")
    n = needs(q)
    prop = find(q.property)
    goals = resolve_goals(store, n)
    if prop.kind == "goal" and not goals.breakdown:
        return []
    shape = Shape(prop=prop)
    rows = run(store, n, shape, goals, Page(q.metrics[0], q.limit, (q.page - 1) * q.limit))
    bases = _base_visitors(store, q, [row.value for row in rows])
    key, parent_key = prop.key, find(prop.parent).key if prop.parent else None
    results = []
    for row in rows:
        named = {key: row.value} | ({parent_key: row.parent} if parent_key else {})
        base = bases.get(row.value) if prop.kind != "goal" else bases.get("")
        results.append(named | values(q.metrics, row.sums, n.page_scoped, base, "breakdown"))
    return results


def _base_visitors(store: Store, q: StatsQuery, listed: list[str]) -> dict[str, int]:
    """conversion_rate's base per row: the visitors of the row's value without the goal
    filters; in a goal breakdown, the visitors of the whole period."""
    if "conversion_rate" not in q.metrics or not listed:
        return {}
    base = without_goal_filters(q)
    if find(q.property).kind != "goal":
        base = replace(base, property=q.property, filters=base.filters + (Filter(q.property, "==", tuple(listed)),))
    n = needs(base)
    shape = Shape(prop=find(base.property)) if base.property else Shape()
    return {row.value: row.sums["visitors"] for row in run(store, n, shape, resolve_goals(store, n))}
