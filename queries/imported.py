"""Imported figures (``storage.imported``) added to a query's own, when it asks
(``StatsQuery.imports``: v1's ``with_imported=true``, v2's ``include.imports``), as
Plausible adds them (``lib/plausible/stats/imported/base.ex``, ``imported.ex``).

The imported tables hold daily sums per value of a few properties, one table per
group of properties. A query is answered with imports when every property it
filters on or breaks down by is in one ``View`` (a table, or tables holding the same
rows), and that view holds every sum its metrics are made of; its imported days are
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
from queries.model import StatsQuery
from queries.parts import SUMS
from queries.planner import Page, Plan, make_plan
from queries.properties import find
from queries.sql import Params, all_of, matches
from storage.clickhouse import DATABASE, Store
from storage.imported import list_imports

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


@dataclass(frozen=True)
class View:
    parts: tuple[Part, ...]

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


def decide(store: Store, plan: Plan, more_props: frozenset[str] = frozenset()) -> Decision:
    """Whether (and over which days) ``plan``'s query includes imports; ``more_props``:
    properties its answer is grouped by besides its own."""
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
    view = _view_for(plan, more_props)
    if view is None:
        return Decision(False, "unsupported_query")
    return Decision(True, None, first, last, view)


def _view_for(plan: Plan, more_props: frozenset[str]) -> View | None:
    n = plan.needs
    props = {f.prop for f in n.query.filters} | ({n.breakdown.name} if n.breakdown is not None else set()) | more_props
    wanted = set(n.sums + n.engagement_sums)
    for view in VIEWS:
        if props <= view.props and (props or not view.props) and wanted <= view.sums:
            return view
    return None


def imported_rows(store: Store, plan: Plan, decision: Decision) -> list[tuple[str, str, str, dict[str, int]]]:
    """The imported sums of ``plan``'s query over ``decision``'s days: (bucket, value,
    parent, sums) per row, valued as the engine values its rows (blank labels)."""
    params = Params()
    selects = [_select(part, plan, decision, params) for part in decision.view.parts]
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


def _select(part: Part, plan: Plan, decision: Decision, params: Params) -> str:
    n, shape = plan.needs, plan.shape
    where = [
        f"site = {params.text(n.query.site)}",
        f"date >= {params.bind(decision.first, 'Date')}",
        f"date <= {params.bind(decision.last, 'Date')}",
    ]
    where += [matches(part.columns[f.prop], f, params, find(f.prop).blank) for f in n.query.filters]
    value = part.columns[shape.prop.name] if shape.prop is not None else "''"
    parent = part.parent if shape.prop is not None and shape.prop.parent else "''"
    columns = ", ".join(f"toUInt64({part.sums[s] if s in part.sums else '0'}) AS n_{s}" for s in SUMS)
    return (
        f"SELECT {_bucket(shape.interval)} AS k_bucket, {value} AS k_value, {parent} AS k_parent, {columns} "
        f"FROM {DATABASE}.{part.table} WHERE {all_of(where)}"
    )


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
