"""The SQL of each kind of rows a result is summed from. Every part selects the same
columns, so that parts combine with UNION ALL and a plain sum:

    k_bucket  the timeseries bucket ('' outside timeseries)
    k_value   the breakdown value ('' outside breakdowns), before blank labels
    k_parent  the browser of a browser version, the OS of an OS version, else ''
    n_<sum>   for each of SUMS: visitors, visits, bounces, duration, pageviews, events,
              entry_visits, entry_bounces (the visits entering on the page(s) filtered
              or broken down by, and their bounces: bounce rate under a page scope),
              revenue (thousandths of the goal currency, of the events in that currency),
              paid (those events), and the engagement sums of ``queries.engagement``

``per_day`` groups by day as well: a visitor hash is salted per day, so the visitors
of a period are the sum of its days' visitors, and parts over different days add
up. The raw path does not split by day; the aggregates path must.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from queries.days import zone_sql
from queries.engagement import SUMS as ENGAGEMENT_SUMS
from queries.engagement import TOTALS, per_visitor_page
from queries.model import Filter
from queries.planner import Needs, RollupRows, Shape
from queries.properties import NO_PROP, Property, find, is_props
from queries.sessions import COUNTED, VISITOR_KEY
from queries.sql import Params, all_of, any_of, event_expression, matches
from storage.goals import Goal, one_currency

SUMS = (
    "visitors",
    "visits",
    "bounces",
    "duration",
    "pageviews",
    "events",
    "entry_visits",
    "entry_bounces",
    "revenue",
    "paid",
) + ENGAGEMENT_SUMS
EVENT_SUMS = ("visitors", "pageviews", "events")
REVENUE_SUMS = ("revenue", "paid")
# What the rolled-up rows of a total, a property or a pair hold: revenue is read from
# the events (the planner sends it there), engagement from rows of its own.
ROLLED_SUMS = tuple(s for s in SUMS if s not in REVENUE_SUMS + ENGAGEMENT_SUMS)
ENGAGEMENT_DIM = "engagement:page"  # beacon.stats_daily's rows of a page's engagement sums
VISIT_SUMS = ("visits", "bounces", "duration")
PAIR_SEPARATOR = "\\x1f"  # between the two values of a pair (ClickHouse's escape of the unit separator)


def bucket(interval: str | None, column: str, zone: str) -> str:
    """A row's timeseries bucket in the site's ``zone`` (queries.timeseries names them):
    an hour is its wall-clock hour and UTC offset (an hour repeated when the clock goes
    back is two buckets), a day its local date, a week its Monday, a month its first day."""
    tz = zone_sql(zone)
    if interval == "hour":
        return (
            f"concat(formatDateTime({column}, '%Y-%m-%d %H:00:00', {tz}), '|', "
            f"toString(timeZoneOffset(toTimeZone({column}, {tz}))))"
        )
    if interval == "date":
        return f"formatDateTime(toDate({column}, {tz}), '%Y-%m-%d')"
    if interval == "week":
        return f"formatDateTime(toMonday(toDate({column}, {tz})), '%Y-%m-%d')"
    if interval == "month":
        return f"formatDateTime(toStartOfMonth(toDate({column}, {tz})), '%Y-%m-01')"
    return "''"


def _select(
    shape: Shape,
    time_column: str,
    value: str,
    parent: str,
    sums: dict[str, str],
    source: str,
    where: list[str],
    per_day: bool,
    only: tuple[str, ...] = SUMS,
) -> str:
    # Output names differ from every input column: an alias would shadow a column of
    # the same name in WHERE and in the other expressions.
    columns = ", ".join(f"toUInt64({sums[s] if s in only and s in sums else '0'}) AS n_{s}" for s in SUMS)
    day = f", toDate({time_column}, {zone_sql(shape.zone)})" if per_day else ""
    return (
        f"SELECT {bucket(shape.interval, time_column, shape.zone)} AS k_bucket, {value} AS k_value, "
        f"{parent} AS k_parent, "
        f"{columns}\nFROM {source}\nWHERE {all_of(where)}\nGROUP BY k_bucket, k_value, k_parent{day}"
    )


def _parent(shape: Shape, column_of) -> str:
    prop = shape.prop
    return column_of(prop.parent) if prop is not None and prop.parent else "''"


# --- visits --------------------------------------------------------------------------


def visit_part(
    relation: str,
    n: Needs,
    shape: Shape,
    per_day: bool,
    params: Params,
    only: tuple[str, ...] = SUMS,
    behaving: tuple[str, ...] = (),
) -> str:
    """From visit rows (``relation``: the columns of beacon.visits), by the time they
    started. Only the sums in ``only`` are computed (and only the arrays they need read).
    ``behaving``: the behavioural filters' conditions on (visitor, start)."""
    where = [matches(p.column, f, params, p.blank) for p, f in n.visit_filters] + list(behaving)
    where += [any_of([matches(p.column, f, params, p.blank) for p, f in group]) for group in n.visit_either]
    prop = shape.prop

    def on_page(path: str) -> str:
        return all_of([matches(path, f, params) for f in n.page_filters])

    sums = {
        "visitors": lambda: "uniqExact(visitor)",
        "visits": lambda: "count()",
        "bounces": lambda: "sum(is_bounce)",
        "duration": lambda: "sum(duration)",
        "pageviews": lambda: "sum(pageviews)",
        "events": lambda: "sum(events)",
    }
    source = f"({relation})"
    value = "''"
    if prop is not None and prop.kind == "page":
        arrays = (
            ["pages AS page"]
            + (["page_pageviews AS page_pv"] if "pageviews" in only else [])
            + (["page_events AS page_ev"] if "events" in only else [])
        )
        source += " ARRAY JOIN " + ", ".join(arrays)
        value = "page"
        if n.page_filters:
            where.append(on_page("page"))
        sums |= {
            "bounces": lambda: "0",
            "pageviews": lambda: "sum(page_pv)",
            "events": lambda: "sum(page_ev)",
            "entry_visits": lambda: "countIf(entry_page = page)",
            "entry_bounces": lambda: "sumIf(is_bounce, entry_page = page)",
        }
    elif n.page_filters:
        where.append(f"arrayExists(p -> {on_page('p')}, pages)")
        sums |= {
            "pageviews": lambda: f"sum(arraySum(arrayMap((p, c) -> if({on_page('p')}, c, 0), pages, page_pageviews)))",
            "events": lambda: f"sum(arraySum(arrayMap((p, c) -> if({on_page('p')}, c, 0), pages, page_events)))",
            # A visit without a pageview has no entry page: it enters on no page, whatever the filter.
            "entry_visits": lambda: f"countIf(entry_page != '' AND {on_page('entry_page')})",
            "entry_bounces": lambda: f"sumIf(is_bounce, entry_page != '' AND {on_page('entry_page')})",
        }
    if prop is not None and prop.kind == "visit":
        value = paired(prop.column, shape.then_by.column) if shape.then_by is not None else prop.column
    parent = _parent(shape, lambda name: find(name).column)
    wanted = {name: make() for name, make in sums.items() if name in only}
    return _select(shape, "start", value, parent, wanted, source, where, per_day, only)


# --- events --------------------------------------------------------------------------


def goal_condition(goals: list[Goal], params: Params) -> str:
    """An event that completes any of ``goals``."""
    if not goals:
        return "0"
    return " OR ".join(_completes(g, params) for g in goals)


def _completes(goal: Goal, params: Params) -> str:
    if goal.kind == "event":
        return f"(type = 'event' AND name = {params.text(goal.value)})"
    if goal.wildcard:
        return f"(type = 'pageview' AND match(path, {params.text(goal.path_regex)}))"
    return f"(type = 'pageview' AND path = {params.text(goal.value)})"


def event_part(
    events_where: str,
    n: Needs,
    shape: Shape,
    per_day: bool,
    params: Params,
    goal_filters: list[list[Goal]],
    breakdown_goals: list[Goal],
    visits: str | None = None,
    only: tuple[str, ...] = SUMS,
    behaving: tuple[str, ...] = (),
) -> str:
    """From events, by their time. ``visits`` (a visits relation) is joined when a visit
    property is filtered on or broken down by, or a behavioural filter names visits: each
    event gets its own visit's (``behaving``: those filters' conditions on (visitor, v_start))."""
    where = [matches("path", f, params) for f in n.page_filters] + list(behaving)
    where += [matches(event_expression(p, params), f, params) for p, f in n.event_filters]
    where += [goal_condition(goals, params) for goals in goal_filters]
    where += [matches(f"v_{p.column}", f, params, p.blank) for p, f in n.visit_filters]
    where += [any_of([_on_event(p, f, params) for p, f in group]) for group in n.visit_either + n.event_either]
    prop = shape.prop
    value = "''"
    if prop is not None:
        if prop.kind == "goal":
            labelled = ", ".join(
                f"if({goal_condition([g], params)}, {params.text(g.display_name)}, '')" for g in breakdown_goals
            )
            value = f"arrayJoin(arrayFilter(x -> x != '', [{labelled}]))"
        else:
            value = _event_value(prop, params)
        if shape.then_by is not None:
            value = paired(value, _event_value(shape.then_by, params))
    parent = _parent(shape, lambda name: f"v_{find(name).column}")
    source = f"(SELECT *, {VISITOR_KEY} AS visitor FROM beacon.events WHERE ({events_where}) AND {COUNTED})"
    if visits is not None:
        wanted = {p.column for p in n.filtered_visit_props}
        if prop is not None and prop.kind == "visit":
            wanted |= {prop.column} | ({find(prop.parent).column} if prop.parent else set())
        if shape.then_by is not None and shape.then_by.kind == "visit":
            wanted.add(shape.then_by.column)
        renamed = "".join(f", {c} AS v_{c}" for c in sorted(wanted))
        source += (
            f" AS e ASOF JOIN (SELECT visitor AS v_visitor, start AS v_start{renamed} FROM ({visits})) AS v "
            "ON e.visitor = v.v_visitor AND e.ts >= v.v_start"
        )
    sums = {"visitors": "uniqExact(visitor)", "pageviews": "countIf(type = 'pageview')", "events": "count()"}
    currency = one_currency([g for goals in goal_filters for g in goals])
    if currency is not None:
        in_currency = f"revenue_currency = {params.text(currency)}"
        sums["revenue"] = f"sumIf(toUInt64(revenue_amount * 1000), {in_currency})"
        sums["paid"] = f"countIf({in_currency})"
    return _select(shape, "ts", value, parent, sums, source, where, per_day, only)


def behaviour_conditions(
    n: Needs, visits: str, start: str, events_where: str, params: Params, goals: Mapping[Filter, list[Goal]]
) -> tuple[str, ...]:
    """Plausible's has_done / has_not_done: the row's visit (its visitor and ``start``
    column) is, or is not, among the visits of ``visits`` with an event of
    ``events_where`` matching all of a behaviour's filters. An event's visit is its
    visitor's latest one starting at or before it (as the join of ``event_part``)."""
    conditions = []
    for behaviour in n.query.behaviours:
        matching = all_of([_event_condition(f, params, goals) for f in behaviour.filters])
        visits_that_did = (
            f"SELECT e.visitor, v.v_start FROM (SELECT *, {VISITOR_KEY} AS visitor FROM beacon.events "
            f"WHERE ({events_where}) AND {COUNTED} AND {matching}) AS e "
            f"ASOF JOIN (SELECT visitor AS v_visitor, start AS v_start FROM ({visits})) AS v "
            "ON e.visitor = v.v_visitor AND e.ts >= v.v_start"
        )
        held = f"(visitor, {start}) IN ({visits_that_did})"
        conditions.append(held if behaviour.done else f"NOT {held}")
    return tuple(conditions)


def paired(first: str, second: str) -> str:
    """A row's two breakdown values as one (``PAIR_SEPARATOR`` between), split when summed."""
    return f"concat({first}, '{PAIR_SEPARATOR}', {second})"


def _event_value(prop: Property, params: Params) -> str:
    """A (non-goal) property's value on an event, its visit's joined as ``v_<column>``."""
    return f"v_{prop.column}" if prop.kind == "visit" else event_expression(prop, params)


def _on_event(prop: Property, f: Filter, params: Params) -> str:
    """``f`` on an event, its visit's properties joined as ``v_<column>``."""
    if prop.kind == "visit":
        return matches(f"v_{prop.column}", f, params, prop.blank)
    if prop.kind == "page":
        return matches("path", f, params)
    return matches(event_expression(prop, params), f, params)


def _event_condition(f: Filter, params: Params, goals: Mapping[Filter, list[Goal]]) -> str:
    prop = find(f.prop)
    if prop.kind == "goal":
        return goal_condition(goals[f], params)
    if prop.kind == "page":
        return matches("path", f, params)
    return matches(event_expression(prop, params), f, params)


def hourly_part(
    site: str, lo: datetime, hi: datetime, shape: Shape, params: Params, only: tuple[str, ...] = EVENT_SUMS
) -> str:
    """A site's visitors, pageviews and events from beacon.events_hourly (whole hours)."""
    sums = {"visitors": "uniqCombinedMerge(14)(visitors)", "pageviews": "sum(pageviews)", "events": "sum(events)"}
    where = [f"site = {params.text(site)}", f"hour >= {params.time(lo)}", f"hour < {params.time(hi)}"]
    return _select(shape, "hour", "''", "''", sums, "beacon.events_hourly", where, True, only)


def engagement_part(events_where: str, n: Needs, shape: Shape, per_day: bool, params: Params) -> str:
    """The engagement sums of the pages filtered on or broken down by, from the
    engagement events (one row per visitor-day and page, then summed per page)."""
    where = [events_where] + [matches("path", f, params) for f in n.page_filters]
    rows = per_visitor_page(all_of(where), zone_sql(shape.zone), bucket(shape.interval, "ts", shape.zone))
    value = "path" if shape.prop is not None else "''"
    return _select(shape, "first", value, "''", TOTALS, f"({rows})", [], per_day, n.engagement_sums)


# --- rolled-up days --------------------------------------------------------------------


def rollup_part(
    site: str,
    days: list[date],
    n: Needs,
    rows: RollupRows,
    shape: Shape,
    params: Params,
    goal_filters: list[list[Goal]],
    breakdown_goals: list[Goal],
    only: tuple[str, ...] = SUMS,
) -> str:
    """From the rolled-up days: beacon.stats_daily's rows of ``rows.prop`` (None: the
    site's totals), or beacon.stats_pairs' under a filter value, on ``days``."""
    base = _days(site, days, params)
    sums = {s: f"sum({s})" for s in ROLLED_SUMS}
    parent = "parent" if shape.prop is not None and shape.prop.parent else "''"
    prop = rows.prop
    if prop is None:
        return _select(shape, "day", "''", "''", sums, "beacon.stats_daily", base + ["dim = ''"], False, only)
    if rows.under is not None and prop.kind == "goal":
        return _goals_under(shape, base, rows.under, breakdown_goals, params, sums, only)
    if rows.under is not None:
        under, value = rows.under
        if under.kind == "goal":  # an event goal's conversions: its event name's rows
            under, value = find("event:name"), goal_filters[0][0].value
        where = base + [
            f"fdim = {params.text(under.name)}",
            f"fvalue = {params.text(value)}",
            f"dim = {params.text(prop.name)}",
        ]
        where += [matches("value", f, params, prop.blank) for f in n.query.filters if f.prop == prop.name]
        return _select(shape, "day", "value", parent, sums, "beacon.stats_pairs", where, False, only)
    if prop.kind == "goal":
        goals = breakdown_goals if shape.prop is not None else goal_filters[0]
        return _goal_rows(shape, base, goals, params, only)
    where = base + [f"dim = {params.text(prop.name)}"]
    conditions = [matches("value", f, params, prop.blank) for f in n.query.filters]
    value = "value" if shape.prop is not None else "''"
    rows = _select(shape, "day", value, parent, sums, "beacon.stats_daily", where + conditions, False, only)
    if not is_props(prop):
        return rows
    # "(none)": the events without the key. On a day no event had it, that is all the
    # day's events and visitors: its totals row (whose counts are the day's events).
    none_conditions = [matches(f"'{NO_PROP}'", f, params) for f in n.query.filters]
    days_with_key = f"SELECT day FROM beacon.stats_daily WHERE {all_of(where)}"
    none_value = f"'{NO_PROP}'" if shape.prop is not None else "''"
    without_key = _select(
        shape,
        "day",
        none_value,
        "''",
        sums,
        "beacon.stats_daily",
        base + ["dim = ''", f"day NOT IN ({days_with_key})"] + none_conditions,
        False,
        only,
    )
    return f"{rows}\nUNION ALL\n{without_key}"


def engagement_rollup_part(site: str, days: list[date], n: Needs, shape: Shape, params: Params) -> str:
    """The engagement sums of the pages filtered on or broken down by, from the rolled-up
    days (beacon.stats_daily's ``engagement:page`` rows)."""
    where = _days(site, days, params) + [f"dim = '{ENGAGEMENT_DIM}'"]
    where += [matches("value", f, params) for f in n.page_filters]
    value = "value" if shape.prop is not None else "''"
    sums = {s: f"sum({s})" for s in ENGAGEMENT_SUMS}
    return _select(shape, "day", value, "''", sums, "beacon.stats_daily", where, False, n.engagement_sums)


def _days(site: str, days: list[date], params: Params) -> list[str]:
    first, last = min(days), max(days)
    return [
        f"site = {params.text(site)}",
        f"day >= {params.bind(first, 'Date')}",
        f"day <= {params.bind(last, 'Date')}",
        f"has({params.bind(sorted(days), 'Array(Date)')}, day)",
    ]


def _goals_under(
    shape: Shape,
    base: list[str],
    under: tuple[Property, str],
    goals: list[Goal],
    params: Params,
    sums: dict[str, str],
    only: tuple[str, ...],
) -> str:
    """Event goals' conversions under one value of a visit property: their event names'
    goal rows (an event goal's display name is its name)."""
    prop, value = under
    where = base + [
        "fdim = 'event:name'",
        f"has({params.texts([g.value for g in goals])}, fvalue)",
        f"dim = {params.text(prop.name)}",
        f"value = {params.text(value)}",
    ]
    named = "fvalue" if shape.prop is not None else "''"
    return _select(shape, "day", named, "''", sums, "beacon.stats_pairs", where, False, only)


def _goal_rows(shape: Shape, base: list[str], goals: list[Goal], params: Params, only: tuple[str, ...]) -> str:
    """A goal's conversions: an event goal's are its name's row (visitors, events); a
    page goal's are its page's row (visitors with a pageview of it, pageviews)."""
    named = "value" if shape.prop is not None else "''"
    events = [g.value for g in goals if g.kind == "event"]
    pages = [g.value for g in goals if g.kind == "page"]
    event_rows = _select(
        shape,
        "day",
        named,
        "''",
        {s: f"sum({s})" for s in EVENT_SUMS},
        "beacon.stats_daily",
        base + ["dim = 'event:name'", f"has({params.texts(events)}, value)"],
        False,
        only,
    )
    page_named = "concat('Visit ', value)" if shape.prop is not None else "''"
    page_rows = _select(
        shape,
        "day",
        page_named,
        "''",
        {"visitors": "sum(pv_visitors)", "pageviews": "sum(pageviews)", "events": "sum(pageviews)"},
        "beacon.stats_daily",
        base + ["dim = 'event:page'", f"has({params.texts(pages)}, value)"],
        False,
        only,
    )
    return f"{event_rows}\nUNION ALL\n{page_rows}"
