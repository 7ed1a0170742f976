"""Runs a query on the path the planner picked: puts its parts together, sums them
per bucket and value, and returns the sums, sorted and cut to a page for a breakdown.

The raw path reads only beacon.events and cuts visits at query time. The
aggregates path reads, for each whole day already rolled up, beacon.stats_daily;
for the other hours, beacon.events_hourly (the site's totals), the built and still
open visits (visit metrics and properties) or the events (event properties).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from queries.model import QueryError
from queries.parts import EVENT_SUMS, SUMS, VISIT_SUMS, Shape, event_part, hourly_part, rollup_part, visit_part
from queries.planner import Needs, plan
from queries.properties import VISIT_COLUMNS, find
from queries.relations import BuildState, build_state, built_and_open_visits, cut_visits, day_start
from queries.sql import Params
from storage.clickhouse import Store
from storage.goals import Goal, list_goals

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Row:
    bucket: str
    value: str
    parent: str
    sums: dict[str, int]


@dataclass(frozen=True)
class Page:
    """A breakdown's sort metric and page."""

    metric: str
    limit: int
    offset: int


@dataclass(frozen=True)
class Goals:
    filters: list[list[Goal]]  # per event:goal filter, the goals it names
    breakdown: list[Goal]  # the goals an event:goal breakdown lists


def resolve_goals(store: Store, n: Needs) -> Goals:
    by_goal = n.breakdown is not None and n.breakdown.kind == "goal"
    if not n.goal_filters and not by_goal:
        return Goals([], [])
    configured = list_goals(store, n.query.site)
    names = {g.display_name for g in configured}
    filters = []
    for f in n.goal_filters:
        if f.op == "==":
            unknown = [v for v in f.values if v not in names]
            if unknown:
                raise QueryError(f"the goal '{unknown[0][:100]}' is not configured for this site")
            filters.append([g for g in configured if g.display_name in f.values])
        else:
            filters.append([g for g in configured if any(v in g.display_name for v in f.values)])
    listed = [g for g in configured if all(g in chosen for chosen in filters)] if by_goal else []
    return Goals(filters, listed)


def run(store: Store, n: Needs, shape: Shape, goals: Goals, page: Page | None = None) -> list[Row]:
    params = Params()
    need = _needed_sums(n)
    if plan(n.query) == "events":
        parts = _raw_parts(n, shape, params, goals, need)
    else:
        parts = _aggregate_parts(store, n, shape, params, goals, need)
    sql = _summed(parts, n, shape, params, page)
    return [Row(b, v, p, dict(zip(SUMS, sums))) for b, v, p, *sums in store.rows(sql, params.values)]


# --- the raw path --------------------------------------------------------------------------


def _raw_parts(n: Needs, shape: Shape, params: Params, goals: Goals, need: tuple[str, ...]) -> list[str]:
    q = n.query
    site = params.text(q.site)
    events = f"site = {site} AND ts >= {params.time(q.start)} AND ts < {params.time(q.end)}"
    if n.plain:
        parts = [event_part(events, n, shape, False, params, [], [], only=_within(need, EVENT_SUMS))]
        if n.visit_metrics:
            visits = cut_visits(q.site, q.start, q.end, params, (), page_arrays=False, paths=False)
            parts.append(visit_part(visits, n, shape, False, params, only=_within(need, VISIT_SUMS)))
        return parts
    if n.on_visits:
        visits = cut_visits(q.site, q.start, q.end, params, _visit_properties(n, shape), page_arrays=n.page_scoped,
                            paths=_reads_entry_or_exit(n, shape))
        return [visit_part(visits, n, shape, False, params, only=need)]
    joined = None
    if n.visit_filters or (shape.prop is not None and shape.prop.kind == "visit"):
        # Events of [start, end) belong to visits that started that day, maybe before start.
        joined = cut_visits(q.site, day_start(q.start), q.end, params, _visit_properties(n, shape), page_arrays=False,
                            paths=_reads_entry_or_exit(n, shape))
    return [event_part(events, n, shape, False, params, goals.filters, goals.breakdown, joined, only=need)]


def _needed_sums(n: Needs) -> tuple[str, ...]:
    """The sums the query's metrics are made of (the others are not computed)."""
    bounces = ("entry_bounces", "entry_visits") if n.page_scoped else ("bounces", "visits")
    made_of = {"bounce_rate": bounces, "visit_duration": ("duration", "visits"),
               "views_per_visit": ("pageviews", "visits"), "conversion_rate": ("visitors",)}
    need = {s for m in n.query.metrics for s in made_of.get(m, (m,))}
    return tuple(s for s in SUMS if s in need)


def _within(need: tuple[str, ...], provided: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for s in need if s in provided)


def _reads_entry_or_exit(n: Needs, shape: Shape) -> bool:
    """Whether a query filters on or breaks down by a visit's entry or exit page (the
    paths, the widest column of a cut, are cut only when read)."""
    props = [p for p, _ in n.visit_filters] + ([shape.prop] if shape.prop is not None else [])
    return any(p.column in ("entry_page", "exit_page") for p in props)


def _visit_properties(n: Needs, shape: Shape) -> tuple[str, ...]:
    """The visit properties a query reads (for cutting visits with no more columns than needed)."""
    props = [p for p, _ in n.visit_filters]
    if shape.prop is not None and shape.prop.kind == "visit":
        props += [shape.prop] + ([find(shape.prop.parent)] if shape.prop.parent else [])
    wanted = {p.column for p in props}
    return tuple(c for c in VISIT_COLUMNS if c in wanted)


# --- the aggregates path -----------------------------------------------------------------


def _aggregate_parts(store: Store, n: Needs, shape: Shape, params: Params, goals: Goals,
                     need: tuple[str, ...]) -> list[str]:
    q = n.query
    state = build_state(store)
    rollup = n.rollup_rows() if shape.interval != "hour" else None
    rolled = [d for d in _whole_days(q.start, q.end) if d in state.rolled] if rollup is not None else []
    parts = []
    if rolled:
        parts.append(rollup_part(q.site, rolled, n, rollup, shape, params, goals.filters, goals.breakdown, need))
    for lo, hi in _rest(q.start, q.end, rolled):
        parts += _recent_parts(n, shape, params, goals, state, lo, hi, need)
    return parts


def _recent_parts(n: Needs, shape: Shape, params: Params, goals: Goals, state: BuildState,
                  lo: datetime, hi: datetime, need: tuple[str, ...]) -> list[str]:
    """Hours not rolled up: event totals by the hour, visits built or still open, events."""
    site = n.query.site
    if n.plain:
        parts = [hourly_part(site, lo, hi, shape, params, only=_within(need, EVENT_SUMS))]
        if n.visit_metrics:
            visits = built_and_open_visits(site, lo, hi, state, params)
            parts.append(visit_part(visits, n, shape, True, params, only=_within(need, VISIT_SUMS)))
        return parts
    if n.on_visits:
        return [visit_part(built_and_open_visits(site, lo, hi, state, params), n, shape, True, params, only=need)]
    events = f"site = {params.text(site)} AND ts >= {params.time(lo)} AND ts < {params.time(hi)}"
    joined = None
    if n.visit_filters or (shape.prop is not None and shape.prop.kind == "visit"):
        joined = built_and_open_visits(site, day_start(lo), hi, state, params)
    return [event_part(events, n, shape, True, params, goals.filters, goals.breakdown, joined, only=need)]


def _whole_days(start: datetime, end: datetime) -> list[date]:
    first = day_start(start) if start == day_start(start) else day_start(start) + DAY
    days = []
    while end - first >= DAY:  # not first + DAY <= end: the day after 9999-12-31 does not exist
        days.append(first.date())
        first += DAY
    return days


def _rest(start: datetime, end: datetime, rolled: list[date]) -> list[tuple[datetime, datetime]]:
    """[start, end) without the rolled days, as intervals."""
    intervals, at = [], start
    for day in rolled:
        lo = datetime.combine(day, datetime.min.time(), start.tzinfo)
        if lo > at:
            intervals.append((at, lo))
        at = lo + DAY
    if at < end:
        intervals.append((at, end))
    return intervals


# --- summing the parts ---------------------------------------------------------------------


def _summed(parts: list[str], n: Needs, shape: Shape, params: Params, page: Page | None) -> str:
    prop = shape.prop
    value, parent, where = "k_value", "k_parent", ""
    if prop is not None:
        if prop.blank is not None:
            value = f"if(k_value = '', {params.text(prop.blank)}, k_value)"
        else:
            where = "WHERE k_value != ''"
        if prop.parent:
            parent = f"if(k_parent = '', {params.text(find(prop.parent).blank or '')}, k_parent)"
    sums = ", ".join(f"sum(n_{s}) AS {s}" for s in SUMS)
    union = "\nUNION ALL\n".join(parts)
    sql = (f"SELECT k_bucket AS b, {value} AS v, {parent} AS pv, {sums}\nFROM (\n{union}\n)\n{where}\n"
           "GROUP BY b, v, pv")
    if page is None:
        return sql + "\nORDER BY b"
    return (sql + f"\nORDER BY {_sort_key(page.metric, n.page_scoped)} DESC, v, pv "
            f"LIMIT {int(page.limit)} OFFSET {int(page.offset)}")


def _sort_key(metric: str, page_scoped: bool) -> str:
    if metric == "bounce_rate":
        return ("if(entry_visits = 0, -1, entry_bounces / entry_visits)" if page_scoped
                else "if(visits = 0, -1, bounces / visits)")
    if metric == "visit_duration":
        return "if(visits = 0, -1, duration / visits)"
    # conversion_rate: by converting visitors (the same order within a goal breakdown)
    return metric if metric in ("visitors", "visits", "pageviews", "events") else "visitors"
