"""Runs a query on the path the planner picked: puts its parts together, sums them
per bucket and value, and returns the sums, sorted and cut to a page for a breakdown.

The raw path reads only beacon.events and cuts visits at query time. The
aggregates path reads, for each whole day already rolled up, beacon.stats_daily;
for the other hours, beacon.events_hourly (the site's totals), the built and still
open visits (visit metrics and properties) or the events (event properties).
Engagement sums (``queries.engagement``) are a part of their own on both paths: the
rolled-up days that hold them (``BuildState.engaged_in``), the engagement events for
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from queries import imported
from queries.days import day_start, hours_align, start_of, whole_days
from queries.goals import Goals, resolve_goals
from queries.parts import (
    EVENT_SUMS,
    PAIR_SEPARATOR,
    SUMS,
    VISIT_SUMS,
    behaviour_conditions,
    engagement_part,
    engagement_rollup_part,
    event_part,
    hourly_part,
    rollup_part,
    visit_part,
)
from queries.planner import EVENTS, Needs, Page, Plan, RollupRows, Shape
from queries.properties import Property, find
from queries.relations import BuildState, build_state, built_and_open_visits, cut_visits
from queries.sql import Params
from storage.clickhouse import Store

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Row:
    bucket: str
    value: str
    parent: str  # the browser of a browser version, the OS of an OS version; a pair's second value
    sums: dict[str, int]


def run(store: Store, plan: Plan, goals: Goals | None = None) -> list[Row]:
    """Carry out ``plan``: its parts, summed per bucket and value (a page of them, for a
    breakdown), with the site's imported figures added when it asks and they answer it
    (``queries.imported``). ``goals``: the plan's goals, when the caller has resolved them already."""
    goals = goals if goals is not None else resolve_goals(store, plan.needs)
    if plan.needs.query.imports:
        decision = imported.decide(store, plan, goals=goals)
        if decision.included:
            return _with_imports(store, plan, goals, decision)
    return _native(store, plan, goals)


def _with_imports(store: Store, plan: Plan, goals: Goals, decision: imported.Decision) -> list[Row]:
    """Own and imported sums added per bucket and value; a breakdown's page is cut after."""
    merged: dict[tuple[str, str, str], dict[str, int]] = {}
    own = [(r.bucket, r.value, r.parent, r.sums) for r in _native(store, replace(plan, page=None), goals)]
    for bucket, value, parent, sums in own + imported.imported_rows(store, plan, decision):
        into = merged.setdefault((bucket, value, parent), dict.fromkeys(SUMS, 0))
        for name, count in sums.items():
            into[name] += count
    rows = [Row(b, v, p, sums) for (b, v, p), sums in merged.items()]
    page = plan.page
    if page is None:
        return sorted(rows, key=lambda r: r.bucket)
    rows.sort(key=lambda r: (r.value, r.parent))
    rows.sort(key=lambda r: imported.sort_key(page, plan.needs.page_scoped, r.sums), reverse=True)
    return rows[page.offset : page.offset + page.limit]


def _native(store: Store, plan: Plan, goals: Goals) -> list[Row]:
    params = Params()
    if plan.source == EVENTS:
        parts = _raw_parts(plan, params, goals) if plan.needs.sums else []
        parts += _raw_engagement_parts(plan, params)
    else:
        state = build_state(store)
        parts = _aggregate_parts(plan, params, goals, state) if plan.needs.sums else []
        parts += _aggregate_engagement_parts(plan, params, state)
    if not parts:  # a period wholly before the site's first day: nothing to read
        return []
    sql = _summed(parts, plan, params)
    return [Row(b, v, p, dict(zip(SUMS, sums))) for b, v, p, *sums in store.rows(sql, params.values)]


# --- the raw path --------------------------------------------------------------------------


def _raw_parts(plan: Plan, params: Params, goals: Goals) -> list[str]:
    n, shape, need = plan.needs, plan.shape, plan.needs.sums
    q = n.query
    events = _events_between(q.site, q.start, q.end, params)
    if n.plain:
        parts = [event_part(events, n, shape, False, params, [], [], only=_within(need, EVENT_SUMS))]
        if n.visit_metrics:
            visits = cut_visits(q.site, q.timezone, q.start, q.end, params, (), page_arrays=False, paths=False)
            parts.append(visit_part(visits, n, shape, False, params, only=_within(need, VISIT_SUMS)))
        return parts
    # Events of [start, end) belong to visits that started that day, maybe before start.
    joined = None
    if n.joins_visits and (not n.on_visits or _splits(n)):
        since = day_start(q.start, q.timezone)
        joined = cut_visits(
            q.site, q.timezone, since, q.end, params, n.visit_columns, page_arrays=False, paths=n.reads_paths
        )
    if not n.on_visits:
        behaving = _behaving(n, joined, "v_start", events, params, goals)
        return [
            event_part(
                events, n, shape, False, params, goals.filters, goals.breakdown, joined, only=need, behaving=behaving
            )
        ]
    visits = cut_visits(
        q.site, q.timezone, q.start, q.end, params, n.visit_columns, page_arrays=n.page_scoped, paths=n.reads_paths
    )
    return _visit_parts(n, shape, False, params, visits, events, joined, goals)


def _raw_engagement_parts(plan: Plan, params: Params) -> list[str]:
    n = plan.needs
    if not n.engagement_sums:
        return []
    q = n.query
    return [engagement_part(_events_between(q.site, q.start, q.end, params), n, plan.shape, False, params)]


def _visit_parts(
    n: Needs,
    shape: Shape,
    per_day: bool,
    params: Params,
    visits: str,
    events: str,
    joined: str | None,
    goals: Goals,
) -> list[str]:
    """A query on visits: every sum from the visits, or, where the two times differ
    (``Needs.splits_by_time``), its event sums from the events, each joined to its visit."""
    need = n.sums
    visits_behaving = _behaving(n, visits, "start", events, params, goals)
    if not _splits(n):
        return [visit_part(visits, n, shape, per_day, params, only=need, behaving=visits_behaving)]
    events_behaving = _behaving(n, joined, "v_start", events, params, goals)
    return [
        visit_part(visits, n, shape, per_day, params, only=_without(need, EVENT_SUMS), behaving=visits_behaving),
        event_part(
            events, n, shape, per_day, params, [], [], joined, only=_within(need, EVENT_SUMS), behaving=events_behaving
        ),
    ]


def _behaving(n: Needs, visits: str | None, start: str, events: str, params: Params, goals: Goals) -> tuple[str, ...]:
    """The behavioural filters' conditions, on the visits of ``visits`` and the events of ``events``."""
    if not n.query.behaviours or visits is None:
        return ()
    return behaviour_conditions(n, visits, start, events, params, goals.behaviours)


def _splits(n: Needs) -> bool:
    """A query on visits whose event sums come from the events (``_visit_parts``)."""
    return n.splits_by_time and bool(_within(n.sums, EVENT_SUMS))


def _events_between(site: str, lo: datetime, hi: datetime, params: Params) -> str:
    return f"site = {params.text(site)} AND ts >= {params.time(lo)} AND ts < {params.time(hi)}"


def _within(need: tuple[str, ...], provided: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for s in need if s in provided)


def _without(need: tuple[str, ...], provided: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(s for s in need if s not in provided)


# --- the aggregates path -----------------------------------------------------------------


def _aggregate_parts(plan: Plan, params: Params, goals: Goals, state: BuildState) -> list[str]:
    q = plan.needs.query
    rolled = _rolled_days(plan, _days_holding(plan, goals, state))
    parts = []
    if rolled:
        parts.append(
            rollup_part(
                q.site,
                rolled,
                plan.needs,
                plan.rollup,
                plan.shape,
                params,
                goals.filters,
                goals.breakdown,
                plan.needs.sums,
            )
        )
    for lo, hi in _since_first_day(_rest(q.start, q.end, rolled, q.timezone), state, q.timezone):
        parts += _recent_parts(plan, params, goals, state, lo, hi)
    return parts


def _since_first_day(
    intervals: list[tuple[datetime, datetime]], state: BuildState, zone: str
) -> list[tuple[datetime, datetime]]:
    """The intervals from the zone's first rolled-up day on. The builder lists every day
    from the first event of the zone's sites, so before it there is nothing to read; a
    12-month question of a site with 6 months of history skips its empty half, whose
    reads cost as much as the rest (docs/analytics.md, Aggregates)."""
    days = state.rolled_in(zone)
    if not days:
        return intervals
    first = start_of(min(days), zone)
    return [(max(lo, first), hi) for lo, hi in intervals if hi > first]


def _aggregate_engagement_parts(plan: Plan, params: Params, state: BuildState) -> list[str]:
    """Engagement sums: the rolled-up days that hold them, the engagement events of the
    other hours (days rolled up before beacon rolled engagement up among them)."""
    n = plan.needs
    if not n.engagement_sums:
        return []
    q = n.query
    rolled = _rolled_days(plan, state.engaged_in(q.timezone))
    parts = [engagement_rollup_part(q.site, rolled, n, plan.shape, params)] if rolled else []
    for lo, hi in _rest(q.start, q.end, rolled, q.timezone):
        parts.append(engagement_part(_events_between(q.site, lo, hi, params), n, plan.shape, True, params))
    return parts


def _rolled_days(plan: Plan, rolled: frozenset[date]) -> list[date]:
    """The whole days of the period read from the roll-ups (none when the plan reads none)."""
    q = plan.needs.query
    if plan.rollup is None:
        return []
    return [d for d in whole_days(q.start, q.end, q.timezone) if d in rolled]


def _days_holding(plan: Plan, goals: Goals, state: BuildState) -> frozenset[date]:
    """The rolled-up days that hold what the plan reads from the roll-ups."""
    rows, zone = plan.rollup, plan.needs.query.timezone
    if rows is None or _counts_wildcards(rows, goals):
        return frozenset()
    return _goal_days(state, zone, rows, goals) if _of_goals(rows) else state.rolled_in(zone)


def _counts_wildcards(rows: RollupRows, goals: Goals) -> bool:
    """Rolled-up days hold each page's visitors, not the visitors of several pages
    together: a wildcard page goal's conversions are counted from the events."""
    if rows.prop is None or rows.prop.kind != "goal":
        return False
    return any(g.wildcard for g in goals.breakdown + [g for chosen in goals.filters for g in chosen])


def _of_goals(rows: RollupRows) -> bool:
    """Goal rows of beacon.stats_pairs: a goal's conversions by a property, or the goals'
    under a visit property's value."""
    return rows.under is not None and "goal" in (rows.under[0].kind, rows.prop.kind)


def _goal_days(state: BuildState, zone: str, rows: RollupRows, goals: Goals) -> frozenset[date]:
    """The rolled-up days that hold the goals' conversions: custom events' (a page goal's
    are counted from the events), on days rolled up with goal rows."""
    converting = goals.breakdown if rows.prop.kind == "goal" else [g for chosen in goals.filters for g in chosen]
    if not converting or any(g.kind != "event" for g in converting):
        return frozenset()
    return state.goals_rolled_in(zone)


def _recent_parts(plan: Plan, params: Params, goals: Goals, state: BuildState, lo: datetime, hi: datetime) -> list[str]:
    """Hours not rolled up: event totals by the hour, visits built or still open, events."""
    n, shape, need = plan.needs, plan.shape, plan.needs.sums
    site, zone = n.query.site, n.query.timezone
    events = _events_between(site, lo, hi, params)
    if n.plain:
        parts = _recent_event_totals(n, shape, params, events, lo, hi)
        if n.visit_metrics:
            visits = built_and_open_visits(site, zone, lo, hi, state, params, (), page_arrays=False, paths=False)
            parts.append(visit_part(visits, n, shape, True, params, only=_within(need, VISIT_SUMS)))
        return parts
    joined = None
    if n.joins_visits and (not n.on_visits or _splits(n)):
        joined = built_and_open_visits(
            site, zone, day_start(lo, zone), hi, state, params, n.visit_columns, page_arrays=False, paths=n.reads_paths
        )
    if not n.on_visits:
        behaving = _behaving(n, joined, "v_start", events, params, goals)
        return [
            event_part(
                events, n, shape, True, params, goals.filters, goals.breakdown, joined, only=need, behaving=behaving
            )
        ]
    visits = built_and_open_visits(
        site, zone, lo, hi, state, params, n.visit_columns, page_arrays=n.page_scoped, paths=n.reads_paths
    )
    return _visit_parts(n, shape, True, params, visits, events, joined, goals)


def _recent_event_totals(n: Needs, shape: Shape, params: Params, events: str, lo: datetime, hi: datetime) -> list[str]:
    """Pageviews and events by the hour from beacon.events_hourly when the site's hours
    are UTC hours; visitors always from the events themselves: the hourly sketches
    (uniqCombined) are approximate beyond a few thousand visitors, and the days not
    yet rolled up are the fewest events of a query."""
    need = _within(n.sums, EVENT_SUMS)
    counted = _without(need, ("visitors",))
    if not counted or not hours_align(lo, hi, n.query.timezone):  # UTC hours would straddle the local ones
        return [event_part(events, n, shape, True, params, [], [], only=need)] if need else []
    parts = [hourly_part(n.query.site, lo, hi, shape, params, only=counted)]
    if "visitors" in need:
        parts.append(event_part(events, n, shape, True, params, [], [], only=("visitors",)))
    return parts


def _rest(start: datetime, end: datetime, rolled: list[date], zone: str) -> list[tuple[datetime, datetime]]:
    """[start, end) without the rolled (local) days, as intervals."""
    intervals, at = [], start
    for day in rolled:
        lo = start_of(day, zone)
        if lo > at:
            intervals.append((at, lo))
        at = start_of(day + DAY, zone)
    if at < end:
        intervals.append((at, end))
    return intervals


# --- summing the parts ---------------------------------------------------------------------


def _summed(parts: list[str], plan: Plan, params: Params) -> str:
    prop = plan.shape.prop
    value, parent, where = "k_value", "k_parent", ""
    if plan.shape.then_by is not None:  # a pair: the second value where a parent goes
        value, parent, where = _pair_values(prop, plan.shape.then_by, params)
    elif prop is not None:
        if prop.blank is not None:
            value = f"if(k_value = '', {params.text(prop.blank)}, k_value)"
        else:
            where = "WHERE k_value != ''"
        if prop.parent:
            parent = f"if(k_parent = '', {params.text(find(prop.parent).blank or '')}, k_parent)"
    sums = ", ".join(f"sum(n_{s}) AS {s}" for s in SUMS)
    union = "\nUNION ALL\n".join(parts)
    sql = f"SELECT k_bucket AS b, {value} AS v, {parent} AS pv, {sums}\nFROM (\n{union}\n)\n{where}\nGROUP BY b, v, pv"
    page = plan.page
    if page is None:
        return sql + "\nORDER BY b"
    return (
        sql + f"\nORDER BY {_sort_key(page, plan.needs.page_scoped)} DESC, v, pv "
        f"LIMIT {int(page.limit)} OFFSET {int(page.offset)}"
    )


def _pair_values(first: Property, second: Property, params: Params) -> tuple[str, str, str]:
    """The two values of a pair (``queries.parts.paired``), each shown with its blank
    label, or its rows left out when empty (as a breakdown by each does): (value, second
    value, WHERE)."""
    values, kept = [], []
    for i, prop in enumerate((first, second), start=1):
        raw = f"splitByChar('{PAIR_SEPARATOR}', k_value)[{i}]"
        if prop.blank is not None:
            values.append(f"if({raw} = '', {params.text(prop.blank)}, {raw})")
        else:
            values.append(raw)
            kept.append(f"{raw} != ''")
    return values[0], values[1], f"WHERE {' AND '.join(kept)}" if kept else ""


def _sort_key(page: Page, page_scoped: bool) -> str:
    """A breakdown's order: its first metric's count, or its ratio (rows with nothing
    to divide last). A metric divided by a base sorts by its numerator (the base is the
    same within a row's value, and alike across a goal breakdown)."""
    numerator, denominator = page.metric.sums(page_scoped)
    if denominator is None or page.metric.of_base:
        return numerator
    return f"if({denominator} = 0, -1, {numerator} / {denominator})"
