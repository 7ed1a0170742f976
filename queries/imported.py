"""Imported figures (``storage.imported``) added to a query's own, when it asks
(``StatsQuery.imports``: v1's ``with_imported=true``, v2's ``include.imports``), as
Plausible adds them (``lib/plausible/stats/imported/base.ex``, ``imported.ex``).

The imported tables hold daily sums per value of a few properties, one table per
group of properties. A query is answered with imports when every property it
filters on or breaks down by is in one ``View`` (a table, or tables holding the same
rows), and that view holds every sum its metrics are made of. Goals are such a view:
an event goal's conversions are read from the custom events of its name, a page
goal's from the pages its path matches; a goal filter names goals of one kind (one
table), as Plausible's ``decide_tables`` requires, while a goal breakdown reads each
goal from its own table (``imported.ex``, ``merge_imported``). Its imported days are
the whole local days of its period that an import covers, added day by day and row
by row (breakdowns by value). Otherwise it is answered from beacon's own data only,
and says why (``Decision.skip_reason``, Plausible's words): ``no_imported_data``,
``out_of_range``, ``unsupported_interval`` (hours: imports are daily) or
``unsupported_query``.

visitors add up: a visitor hash lives one local day, so beacon's visitors of a
period are the sum of its days' visitors too; an imported row's visitors are taken
as distinct from any other row's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from fractions import Fraction

from queries.days import whole_days
from queries.goals import Goals, resolve_goals
from queries.model import StatsQuery
from queries.parts import SUMS
from queries.planner import Needs, Page, Plan, make_plan
from queries.properties import NO_PROP, find
from queries.sql import Params, all_of, matches
from storage.clickhouse import DATABASE, Store
from storage.goals import Goal
from storage.imported import GOALS_WITH_PATH, GOALS_WITH_URL, list_imports

VISIT_SUMS = {"visitors": "visitors", "visits": "visits", "bounces": "bounces", "duration": "visit_duration"}
WITH_PAGEVIEWS = VISIT_SUMS | {"pageviews": "pageviews"}


@dataclass(frozen=True)
class Part:
    """One imported table's rows: its column for each property of the view, and for each
    sum the column it is made of (a sum it lacks is 0 in its rows)."""

    table: str
    columns: dict[str, str]  # property name → SQL expression over the table
    sums: dict[str, str]  # beacon sum (queries.parts.SUMS) → column of the table
    parent: str = "''"  # a version's browser / OS
    goal_kind: str | None = None  # the kind of goal whose conversions its rows hold (event | page)


@dataclass(frozen=True)
class Special:
    """A special goal's prop an imported table keeps: a question is answered with it only
    when it filters (``==``) on one of its goals by name, as Plausible requires."""

    prop: str  # event:props:url | event:props:path
    goals: tuple[str, ...]  # the goals (event names) that carry it


@dataclass(frozen=True)
class View:
    parts: tuple[Part, ...]
    special: Special | None = None

    @property
    def props(self) -> frozenset[str]:
        return frozenset(self.parts[0].columns)

    @property
    def sums(self) -> frozenset[str]:
        return frozenset(s for p in self.parts for s in p.sums)


def _visit_view(table: str, columns: dict[str, str], **renamed: str) -> View:
    return View((Part(table, columns, WITH_PAGEVIEWS | renamed),))


VIEWS: tuple[View, ...] = (
    # The site's totals: events are its pageviews and custom events.
    View(
        (
            Part("imported_visitors", {}, WITH_PAGEVIEWS | {"events": "pageviews"}),
            Part("imported_custom_events", {}, {"events": "events"}),
        )
    ),
    _visit_view(
        "imported_sources",
        {"visit:source": "source", "visit:referrer": "referrer"}
        | {f"visit:{u}": u for u in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")},
    ),
    # A page's visitors and visits; the bounce rate of a page is that of the visits entering on it.
    View(
        (
            Part(
                "imported_pages",
                {"event:page": "page"},
                {"visitors": "visitors", "visits": "visits", "pageviews": "pageviews"},
            ),
            Part(
                "imported_entry_pages",
                {"event:page": "entry_page"},
                {"entry_visits": "entrances", "entry_bounces": "bounces"},
            ),
        )
    ),
    _visit_view("imported_entry_pages", {"visit:entry_page": "entry_page"}, visits="entrances"),
    _visit_view("imported_exit_pages", {"visit:exit_page": "exit_page"}, visits="exits"),
    _visit_view("imported_locations", {"visit:country": "country", "visit:region": "region"}),
    _visit_view("imported_devices", {"visit:device": "lower(device)"}),
    View(
        (
            Part(
                "imported_browsers",
                {"visit:browser": "browser", "visit:browser_version": "browser_version"},
                WITH_PAGEVIEWS,
                parent="browser",
            ),
        )
    ),
    View(
        (
            Part(
                "imported_operating_systems",
                {"visit:os": "operating_system", "visit:os_version": "operating_system_version"},
                WITH_PAGEVIEWS,
                parent="operating_system",
            ),
        )
    ),
    # Goals, as Plausible reads them: an event goal's conversions are its name's custom
    # events (visitors, events), a page goal's the rows of the pages its path matches
    # (visitors, pageviews as events); a page row counts under each goal it matches.
    View(
        (
            Part(
                "imported_custom_events",
                {"event:goal": "name"},
                {"visitors": "visitors", "events": "events", "pageviews": "0"},
                goal_kind="event",
            ),
            Part(
                "imported_pages",
                {"event:goal": "page"},
                {"visitors": "visitors", "events": "pageviews", "pageviews": "pageviews"},
                goal_kind="page",
            ),
        )
    ),
    # A special goal's url or path (Plausible's imported custom props); events without one: "(none)".
    *(
        View(
            (
                Part(
                    "imported_custom_events",
                    {prop: f"if({column} = '', '{NO_PROP}', {column})", "event:name": "name", "event:goal": "name"},
                    {"visitors": "visitors", "events": "events", "pageviews": "0"},
                    goal_kind="event",
                ),
            ),
            Special(prop, special),
        )
        for prop, column, special in (
            ("event:props:url", "link_url", GOALS_WITH_URL),
            ("event:props:path", "path", GOALS_WITH_PATH),
        )
    ),
    # Event names: the custom events', and pageviews (imported_visitors') as "pageview".
    View(
        (
            Part("imported_custom_events", {"event:name": "name"}, {"visitors": "visitors", "events": "events"}),
            Part(
                "imported_visitors",
                {"event:name": "'pageview'"},
                {"visitors": "visitors", "pageviews": "pageviews", "events": "pageviews"},
            ),
        )
    ),
)


@dataclass(frozen=True)
class Decision:
    """Whether a query's answer includes imported figures, and which days they cover."""

    included: bool
    skip_reason: str | None = None
    first: date | None = None  # the imported days added, inclusive
    last: date | None = None
    view: View | None = field(default=None, compare=False)
    goals: Goals = field(default_factory=lambda: Goals([], []), compare=False)  # the goals its question names

    def meta(self) -> dict:
        """What the answer says about imports (v2's meta fields, and v1's)."""
        if not self.included:
            return {"imports_included": False, "imports_skip_reason": self.skip_reason}
        return {"imports_included": True, "imported_days": {"from": str(self.first), "to": str(self.last)}}


def described(store: Store, q: StatsQuery) -> dict:
    """What an answer to ``q`` says about imports (``Decision.meta``); nothing when it asks none."""
    return decide(store, make_plan(q)).meta() if q.imports else {}


def decide_grouped(store: Store, q: StatsQuery, props: tuple[str, ...]) -> Decision:
    """``decide`` for a question grouped by several ``props`` (v2's dimensions): imports
    are added only when one view holds them all, or the groups would mix."""
    return decide(store, make_plan(replace(q, property=props[0] if props else None)), frozenset(props))


def decide(store: Store, plan: Plan, more_props: frozenset[str] = frozenset(), goals: Goals | None = None) -> Decision:
    """Whether (and over which days) ``plan``'s query includes imports; ``more_props``:
    properties its answer is grouped by besides its own; ``goals``: the plan's goals,
    when the caller has resolved them already."""
    q = plan.needs.query
    imports = list_imports(store, q.site)
    if not imports:
        return Decision(False, "no_imported_data")
    days = whole_days(q.start, q.end, q.timezone)
    first = max([days[0]] + [min(i.first for i in imports)]) if days else None
    last = min([days[-1]] + [max(i.last for i in imports)]) if days else None
    if first is None or last is None or first > last:
        return Decision(False, "out_of_range")
    if q.interval == "hour":
        return Decision(False, "unsupported_interval")
    wanted = set(plan.needs.sums + plan.needs.engagement_sums)
    if not any(wanted <= view.sums for view in VIEWS):
        # Revenue, say: no imported table holds it; its goals need no resolving (the v2 API
        # answers revenue of goals without one currency as null, not as an error).
        return Decision(False, "unsupported_query")
    goals = goals if goals is not None else resolve_goals(store, plan.needs)
    view = _view_for(plan, more_props, goals)
    if view is None:
        return Decision(False, "unsupported_query")
    return Decision(True, None, first, last, view, goals)


def settled(store: Store, plan: Plan) -> StatsQuery:
    """``plan``'s query asking imports only when they answer it: the question a conversion
    rate divides by (its base) then adds the imported visitors too, or neither does."""
    q = plan.needs.query
    return q if not q.imports or decide(store, plan).included else replace(q, imports=False)


def _view_for(plan: Plan, more_props: frozenset[str], goals: Goals) -> View | None:
    n = plan.needs
    if n.query.behaviours or n.query.either:
        return None  # which visits did what, or alternatives: daily sums hold neither
    if not _goals_fit(n, goals):
        return None
    grouped = ({n.breakdown.name} if n.breakdown is not None else set()) | more_props
    props = {f.prop for f in n.query.filters} | grouped
    wanted = set(n.sums + n.engagement_sums)
    for view in VIEWS:
        fits = props <= view.props and (props or not view.props) and wanted <= view.sums
        if fits and (view.special is None or _special_fits(view.special, n, goals, props, grouped)):
            return view
    return None


def _special_fits(special: Special, n: Needs, goals: Goals, props: set[str], grouped: set[str]) -> bool:
    """A question on a special goal's prop: it names the prop, is grouped by nothing else,
    filters on one of the goals that carry it by name (``is``), its goals are event goals,
    and it asks no conversion rate (whose base, without the goal, has no imported rows)."""
    named = {v for f in n.query.filters if f.prop in ("event:name", "event:goal") and f.op == "==" for v in f.values}
    event_goals = all(g.kind == "event" for chosen in goals.filters for g in chosen)
    return (
        special.prop in props
        and grouped <= {special.prop}
        and bool(named & set(special.goals))
        and event_goals
        and not n.asks_base
    )


def _goals_fit(n: Needs, goals: Goals) -> bool:
    """Goals are read from one table each: a goal breakdown lists each goal from its own
    (its goal filters only narrow the goals listed); a goal filter without one must be
    the only one, and name goals of one kind (Plausible: custom events, or pages)."""
    if n.by_goal or not n.goal_filters:
        return True
    return len(goals.filters) == 1 and len({g.kind for g in goals.filters[0]}) == 1


def imported_rows(store: Store, plan: Plan, decision: Decision) -> list[tuple[str, str, str, dict[str, int]]]:
    """The imported sums of ``plan``'s query over ``decision``'s days: (bucket, value,
    parent, sums) per row, valued as the engine values its rows (blank labels)."""
    params = Params()
    n = plan.needs
    parts = [
        p for p in decision.view.parts if p.goal_kind is None or not _of_goals(n) or _goals_of(p, n, decision.goals)
    ]
    selects = [_select(part, plan, decision, params) for part in parts]
    if not selects:
        return []
    sums = ", ".join(f"sum(n_{s})" for s in SUMS)
    sql = f"SELECT k_bucket, k_value, k_parent, {sums} FROM ({' UNION ALL '.join(selects)}) GROUP BY 1, 2, 3"
    prop = plan.shape.prop
    blank = prop.blank if prop is not None else None
    parent_blank = (find(prop.parent).blank or "") if prop is not None and prop.parent else ""
    out = []
    for bucket, value, parent, *found in store.rows(sql, params.values):
        if prop is not None and value == "" and blank is None:
            continue  # as the engine leaves out a property's empty values
        shown = blank if prop is not None and value == "" else value
        out.append((bucket, shown, parent or parent_blank, dict(zip(SUMS, map(int, found)))))
    return out


def _of_goals(n: Needs) -> bool:
    """The question names goals: its rows are those of the goals' conversions."""
    return n.by_goal or bool(n.goal_filters)


def _goals_of(part: Part, n: Needs, goals: Goals) -> list[Goal]:
    """The goals of ``part``'s kind whose conversions are asked (a goal part is read only
    when there are some): those a goal breakdown lists, else those of the goal filter."""
    asked = goals.breakdown if n.by_goal else goals.filters[0] if goals.filters else []
    return [g for g in asked if g.kind == part.goal_kind]


def _select(part: Part, plan: Plan, decision: Decision, params: Params) -> str:
    n, shape = plan.needs, plan.shape
    where = [
        f"site = {params.text(n.query.site)}",
        f"date >= {params.bind(decision.first, 'Date')}",
        f"date <= {params.bind(decision.last, 'Date')}",
    ]
    where += [
        matches(part.columns[f.prop], f, params, find(f.prop).blank) for f in n.query.filters if f.prop != "event:goal"
    ]
    value = part.columns[shape.prop.name] if shape.prop is not None else "''"
    if part.goal_kind is not None and _of_goals(n):
        converted, named = _goal_terms(part, _goals_of(part, n, decision.goals), params)
        where.append(converted)
        value = named if n.by_goal else value
    parent = part.parent if shape.prop is not None and shape.prop.parent else "''"
    columns = ", ".join(f"toUInt64({part.sums[s] if s in part.sums else '0'}) AS n_{s}" for s in SUMS)
    return (
        f"SELECT {_bucket(shape.interval)} AS k_bucket, {value} AS k_value, {parent} AS k_parent, {columns} "
        f"FROM {DATABASE}.{part.table} WHERE {all_of(where)}"
    )


def _goal_terms(part: Part, goals: list[Goal], params: Params) -> tuple[str, str]:
    """A goal part's rows that convert on any of ``goals``, and the goal each row is
    counted under (a page row matching several page goals: a row per goal), as SQL."""
    column = part.columns["event:goal"]
    if part.goal_kind == "event":
        return f"has({params.texts([g.value for g in goals])}, {column})", column
    reached = [f"match({column}, {params.text(g.path_regex)})" for g in goals]
    named = ", ".join(f"if({r}, {params.text(g.display_name)}, '')" for r, g in zip(reached, goals, strict=True))
    return f"({' OR '.join(reached)})", f"arrayJoin(arrayFilter(g -> g != '', [{named}]))"


def _bucket(interval: str | None) -> str:
    """The timeseries bucket of a day, as ``queries.parts.bucket`` keys it."""
    if interval == "date":
        return "formatDateTime(date, '%Y-%m-%d')"
    if interval == "week":
        return "formatDateTime(toMonday(date), '%Y-%m-%d')"
    if interval == "month":
        return "formatDateTime(toStartOfMonth(date), '%Y-%m-01')"
    return "''"


def sort_key(page: Page, page_scoped: bool, sums: dict[str, int]) -> Fraction | int:
    """A breakdown row's place, as the engine sorts in SQL (``engine._sort_key``)."""
    numerator, denominator = page.metric.sums(page_scoped)
    if denominator is None or page.metric.of_base:
        return sums[numerator]
    return -1 if sums[denominator] == 0 else Fraction(sums[numerator], sums[denominator])
