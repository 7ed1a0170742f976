"""Metrics per group: per time bucket and per value of one or more properties, every
group that has data, unsorted and unpaged (the Stats API v2's ``dimensions``: the API
sorts and pages the groups).

The engine groups by one bucket and one property, or a pair of them (``pairs``: two
visit properties, or, for event metrics, visit, page and event properties, none a
version). Otherwise each property beyond the first is one run per value of the ones
before it, filtered on that value: a group of two costs one run per value of the first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from queries.aggregate import without_goal_filters
from queries.engine import Row, run
from queries.goals import resolve_goals
from queries.model import Filter, QueryError, StatsQuery
from queries.planner import make_plan
from queries.properties import find
from queries.sql import any_of_patterns
from queries.timeseries import slots
from storage.clickhouse import Store

MAX_RUNS = 200  # engine runs one question may cost (nested properties multiply them)
EVENT_METRICS = frozenset(("visitors", "pageviews", "events"))
VISIT_PAIR_METRICS = EVENT_METRICS | {"visits", "bounce_rate", "visit_duration"}
REGEX_OPERATORS = ("=~", "!=~")


@dataclass(frozen=True)
class Group:
    bucket: str | None  # the time bucket's label; None: no time dimension
    values: tuple[str, ...]  # one per property, in the order asked
    sums: dict[str, int]


@dataclass(frozen=True)
class Grouping:
    groups: list[Group]
    page_scoped: bool  # bounce rate counts the visits entering on the pages concerned
    labels: list[str]  # every time bucket's label, in order (none without a time dimension)


def grouped(store: Store, q: StatsQuery, props: tuple[str, ...]) -> Grouping:
    """``q``'s sums per (``q.interval`` bucket, value of each of ``props``)."""
    check_patterns(store, every_filter(q))
    plan = make_plan(replace(q, property=props[0] if props else None))
    labels = dict(slots(q.start, q.end, q.interval, q.timezone)) if q.interval else {}
    budget = [MAX_RUNS]
    groups = _groups(store, q, props, (), budget)
    named = [replace(g, bucket=labels.get(g.bucket, g.bucket)) if q.interval else g for g in groups]
    return Grouping(named, plan.needs.page_scoped, list(labels.values()))


def base_visitors(store: Store, q: StatsQuery, props: tuple[str, ...]) -> dict[tuple, int]:
    """A conversion rate's base: the visitors of ``q`` without its goal (and props)
    filters, per (bucket, values of ``props``), ``props`` holding no event:goal. ``q``'s
    imports are settled: the API asks them only when they answer ``q`` whole."""
    base = replace(without_goal_filters(q), interval=q.interval)
    found = grouped(store, base, props)
    return {(g.bucket, g.values): g.sums["visitors"] for g in found.groups}


def every_filter(q: StatsQuery) -> tuple[Filter, ...]:
    """``q``'s filters, those among alternatives and those of its behavioural filters."""
    grouped_filters = tuple(f for group in q.either for f in group.filters)
    return q.filters + grouped_filters + tuple(f for b in q.behaviours for f in b.filters)


def check_patterns(store: Store, filters: tuple[Filter, ...]) -> None:
    """QueryError for a regular expression re2 does not compile (ClickHouse's error
    would otherwise come from the middle of the query)."""
    for f in filters:
        if f.op not in REGEX_OPERATORS:
            continue
        try:
            store.rows("SELECT match('', {pattern:String})", {"pattern": any_of_patterns(f.values)})
        except Exception as exc:  # the store's error type differs embedded and remote
            if "re2" not in str(exc):  # not the expression's fault: a 500, and logged
                raise
            raise QueryError(f"Invalid filters. The regular expression on {f.prop[:80]} is not valid re2.") from None


def _groups(
    store: Store, q: StatsQuery, props: tuple[str, ...], fixed: tuple[str, ...], budget: list[int]
) -> list[Group]:
    _spend(budget)
    if pairs(q, props):
        rows = _run(store, replace(q, property=props[0], then_by=props[1]))
        return [Group(row.bucket if q.interval else None, fixed + (row.value, row.parent), row.sums) for row in rows]
    if len(props) <= 1:
        rows = _run(store, replace(q, property=props[0] if props else None))
        bucketed = q.interval is not None
        return [
            Group(row.bucket if bucketed else None, fixed + ((row.value,) if props else ()), row.sums) for row in rows
        ]
    first, rest = props[0], props[1:]
    outer = _run(store, replace(q, property=first, interval=None))
    _spend(budget, len(outer))  # before the runs, not after a hundred of them
    found = []
    for value in dict.fromkeys(row.value for row in outer):  # a version is a row per browser
        narrowed = replace(q, filters=q.filters + (Filter(first, "==", (value,)),))
        found += _groups(store, narrowed, rest, fixed + (value,), budget)
    return found


def pairs(q: StatsQuery, props: tuple[str, ...]) -> bool:
    """Whether the engine groups by ``props`` in one run: two properties, neither a goal
    nor a version; metrics that visits hold when both are visit properties, else event
    metrics only (counted on the events)."""
    if len(props) != 2:
        return False
    first, second = find(props[0]), find(props[1])
    if any(p.kind == "goal" or p.parent for p in (first, second)):
        return False
    allowed = VISIT_PAIR_METRICS if first.kind == second.kind == "visit" else EVENT_METRICS
    return set(q.metrics) <= allowed


def _run(store: Store, q: StatsQuery) -> list[Row]:
    plan = make_plan(q)
    goals = resolve_goals(store, plan.needs)
    if plan.needs.by_goal and not goals.breakdown:  # no goal configured: nothing to list
        return []
    return run(store, plan, goals)


def _spend(budget: list[int], runs: int = 1) -> None:
    budget[0] -= runs
    if budget[0] < 0:
        raise QueryError(
            f"these dimensions have too many combinations to answer (more than {MAX_RUNS} queries); "
            "filter them, or ask fewer dimensions"
        )
