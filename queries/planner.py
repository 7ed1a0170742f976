"""What a query needs, what it may not ask, and where it is answered (Plausible's
``table_decider``): the aggregates (rolled-up days, hourly totals, built visits)
when they hold every metric, property and filter it uses, else the raw events.

Both paths give the same numbers; the aggregates are only faster. Two questions
decide:

* Which rows answer it: events (event metrics, event properties, goals, or a
  page filter without visit metrics) or visits (visit metrics, visit properties).
  Without filters and breakdown, visitors, pageviews and events come from the
  events (by event time) and visit metrics from the visits (by the time the visit
  started).
* Whether the rolled-up days can answer it: they hold one property per row, so a
  query may use at most one property, filtered on one value (or broken down by,
  with any filter on that same property); or the usual filtered breakdowns (by
  page, source, country, device, browser or OS, under one value of another of them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from queries.days import day_start
from queries.engagement import SUMS as ENGAGEMENT_SUMS
from queries.metrics import Metric, Refusal, find_metric
from queries.model import OPERATORS, Behaviour, Filter, QueryError, StatsQuery
from queries.properties import VISIT_COLUMNS, Property, find

HOUR_SECONDS = 3600
AGGREGATES, EVENTS = "aggregates", "events"  # the two paths (Plan.source)


@dataclass(frozen=True)
class Shape:
    """What one answer row stands for: a timeseries bucket, a breakdown value, or the
    whole period (neither)."""

    interval: str | None = None  # hour | date | month: a timeseries
    prop: Property | None = None  # a breakdown
    zone: str = "UTC"  # the site's time zone, which cuts days, hours and months
    then_by: Property | None = None  # a breakdown's second property: a row per pair of values


@dataclass(frozen=True)
class Page:
    """A breakdown's sort metric and page."""

    metric: Metric
    limit: int
    offset: int


@dataclass(frozen=True)
class RollupRows:
    """Rows of beacon.stats_daily (``prop``'s; None: the site's totals), or of
    beacon.stats_pairs when ``under`` names the filter value they are broken down under."""

    prop: Property | None
    under: tuple[Property, str] | None = None


@dataclass(frozen=True)
class Needs:
    """A validated query, its filters sorted by where they apply."""

    query: StatsQuery
    metrics: tuple[Metric, ...]
    breakdown: Property | None
    visit_filters: tuple[tuple[Property, Filter], ...]
    page_filters: tuple[Filter, ...]
    event_filters: tuple[tuple[Property, Filter], ...]
    goal_filters: tuple[Filter, ...]
    # The query's ``either`` groups: of visit properties only (held by a visit), or not (by an event).
    visit_either: tuple[tuple[tuple[Property, Filter], ...], ...] = ()
    event_either: tuple[tuple[tuple[Property, Filter], ...], ...] = ()
    then_by: Property | None = None  # the breakdown's second property

    @property
    def by_visit_pair(self) -> bool:
        """Broken down by two visit properties."""
        return self.then_by is not None and self.breakdown.kind == self.then_by.kind == "visit"

    @property
    def filtered(self) -> bool:
        filters = self.visit_filters or self.page_filters or self.event_filters or self.goal_filters
        return bool(filters or self.query.behaviours or self.query.either)

    @property
    def filtered_visit_props(self) -> tuple[Property, ...]:
        """The visit properties filtered on, in a filter or among alternatives."""
        grouped = [p for group in self.visit_either + self.event_either for p, _ in group if p.kind == "visit"]
        return tuple(dict.fromkeys([p for p, _ in self.visit_filters] + grouped))

    @property
    def plain(self) -> bool:
        """No filter and no breakdown: the site's totals."""
        return not self.filtered and self.breakdown is None

    @property
    def visit_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.of_visits)

    @property
    def asks_base(self) -> bool:
        """A metric divides by the visitors of the question without its goal filters."""
        return any(m.of_base for m in self.metrics)

    @property
    def by_goal(self) -> bool:
        return self.breakdown is not None and self.breakdown.kind == "goal"

    @property
    def on_visits(self) -> bool:
        """Answered from visits: it asks a visit metric, filters on a visit property or
        breaks down by one, and uses no event-only property (name, hostname, props,
        goal), which visits do not hold."""
        uses_visits = bool(self.visit_metrics or self.visit_filters or self.visit_either) or (
            self.breakdown is not None and self.breakdown.kind == "visit"
        )
        return uses_visits and not self.event_only

    @property
    def splits_by_time(self) -> bool:
        """Event metrics count events at their time, visit metrics visits at their start.
        The two agree on whole local days (a visit never crosses the site's midnight),
        so a query on visits computes its event sums from the events only when its
        buckets are hours or its period is not whole days."""
        q = self.query
        return q.interval == "hour" or not (_at_midnight(q.start, q.timezone) and _at_midnight(q.end, q.timezone))

    @property
    def joins_visits(self) -> bool:
        """Read from events, each joined to its visit: a visit property is filtered on
        or broken down by, with an event-only one; or a behavioural filter names visits
        (each event is then known by its visit)."""
        visit_pair = self.then_by is not None and "visit" in (self.breakdown.kind, self.then_by.kind)
        return bool(self.filtered_visit_props or self.query.behaviours or visit_pair) or (
            self.breakdown is not None and self.breakdown.kind == "visit"
        )

    @property
    def event_only(self) -> bool:
        """It filters on or breaks down by a property only events hold."""
        # A pair with a page or event property is counted on events (visits hold no pair of them).
        event_pair = self.then_by is not None and not self.by_visit_pair
        return bool(self.event_filters or self.goal_filters or self.event_either or event_pair) or (
            self.breakdown is not None and self.breakdown.kind in ("event", "goal")
        )

    @property
    def page_scoped(self) -> bool:
        """Bounce rate counts only the visits entering on the page(s) concerned."""
        return bool(self.page_filters) or (self.breakdown is not None and self.breakdown.kind == "page")

    @property
    def sums(self) -> tuple[str, ...]:
        """The sums its metrics are made of (the others are not computed), but engagement's."""
        return tuple(s for s in self._all_sums() if s not in ENGAGEMENT_SUMS)

    @property
    def engagement_sums(self) -> tuple[str, ...]:
        """The engagement sums its metrics are made of (``queries.engagement``): from the
        engagement events, a part of their own."""
        return tuple(s for s in self._all_sums() if s in ENGAGEMENT_SUMS)

    def _all_sums(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for m in self.metrics for s in m.needed(self.page_scoped)))

    @property
    def visit_columns(self) -> tuple[str, ...]:
        """The visit properties it reads (visits are cut with no more columns than needed)."""
        props = list(self.filtered_visit_props)
        if self.breakdown is not None and self.breakdown.kind == "visit":
            props += [self.breakdown] + ([find(self.breakdown.parent)] if self.breakdown.parent else [])
        if self.then_by is not None and self.then_by.kind == "visit":
            props.append(self.then_by)
        wanted = {p.column for p in props}
        return tuple(c for c in VISIT_COLUMNS if c in wanted)

    @property
    def reads_paths(self) -> bool:
        """Whether it filters on or breaks down by a visit's entry or exit page (the
        paths, the widest column of a cut, are cut only when read)."""
        props = list(self.filtered_visit_props) + [p for p in (self.breakdown, self.then_by) if p is not None]
        return any(p.column in ("entry_page", "exit_page") for p in props)

    def rollup_rows(self) -> RollupRows | None:
        """The rolled-up rows that answer it on whole days, if any (none hold revenue, nor
        know which visits did what)."""
        if "revenue" in self.sums or self.query.behaviours or self.query.either or self.then_by is not None:
            return None
        props = {p.name for p, _ in self.visit_filters + self.event_filters}
        props |= {"event:page"} if self.page_filters else set()
        props |= {"event:goal"} if self.goal_filters else set()
        if self.breakdown is not None:
            if props <= {self.breakdown.name}:
                return RollupRows(self.breakdown)
            under = self._pair_filter()
            return RollupRows(self.breakdown, under) if under is not None else None
        if not props:
            return RollupRows(None)
        filters = self.query.filters
        if len(filters) != 1 or filters[0].op != "==" or len(filters[0].values) != 1:
            return None
        return RollupRows(find(filters[0].prop))

    def _pair_filter(self) -> tuple[Property, str] | None:
        """The one filter value (``==``, not on the breakdown property) beacon.stats_pairs
        holds this breakdown under, if it does: a paired property's, or one goal's (its
        conversions by any visit property or page), or the goals' under a visit
        property's value (the engine reads goal rows for event goals only)."""
        others = [f for f in self.query.filters if f.prop != self.breakdown.name]
        if len(others) != 1:
            return None
        f = others[0]
        prop = find(f.prop)
        if f.op != "==" or len(f.values) != 1:
            return None
        if prop.kind == "goal" and self.breakdown.kind in ("visit", "page"):
            return prop, f.values[0]
        if self.breakdown.kind == "goal" and prop.kind == "visit":
            return prop, "" if f.values[0] == prop.blank else f.values[0]
        if not (prop.paired and self.breakdown.paired):
            return None
        return prop, "" if f.values[0] == prop.blank else f.values[0]


@dataclass(frozen=True)
class Plan:
    """Where and how a query is answered, decided once: the engine carries it out
    (parts, then one summing SELECT) and the query kinds finish its rows."""

    needs: Needs
    shape: Shape
    source: str  # AGGREGATES | EVENTS
    reason: str  # why, in words (beacon query-plan prints it)
    rollup: RollupRows | None  # the rolled-up rows that answer its whole days (aggregates path)
    page: Page | None = None  # a breakdown's sort and page

    def describe(self) -> dict:
        """The plan in plain data, for printing."""
        rollup = None
        if self.rollup is not None:
            table = "beacon.stats_pairs" if self.rollup.under is not None else "beacon.stats_daily"
            rows = self.rollup.prop.name if self.rollup.prop is not None else "the site's totals"
            under = f" under {self.rollup.under[0].name}" if self.rollup.under is not None else ""
            rollup = f"{table}: {rows}{under}"
        engagement = None
        if self.needs.engagement_sums:
            engagement = "beacon.stats_daily: engagement:page" if self.rollup is not None else "engagement events"
        return {
            "source": self.source,
            "reason": self.reason,
            "rolled_up_days": rollup,
            "engagement": engagement,  # where time_on_page and scroll_depth are read (rolled-up days, else raw)
            "rows": "visits" if self.needs.on_visits else "events",
            "joins_visits": not self.needs.on_visits and self.needs.joins_visits,
            "sums": list(self.needs.sums + self.needs.engagement_sums),
            "shape": {
                "interval": self.shape.interval,
                "breakdown": self.shape.prop.name if self.shape.prop is not None else None,
            },
        }


def needs(q: StatsQuery) -> Needs:
    """The query sorted out, or QueryError for what Plausible refuses too."""
    q = replace(q, start=utc(q.start), end=utc(q.end))
    if not q.metrics:
        raise QueryError("at least one metric is needed")
    metrics = tuple(find_metric(name) for name in q.metrics)
    if q.start >= q.end:
        raise QueryError("the period is empty")
    breakdown = find(q.property) if q.property else None
    visit, page, event, goal = [], [], [], []
    for f in q.filters:
        if f.op not in OPERATORS:
            raise QueryError(f"unknown filter operator '{f.op[:5]}' on {f.prop[:80]}")
        if not f.values:
            raise QueryError(f"the filter on {f.prop[:80]} needs a value")
        prop = find(f.prop)
        if prop.kind == "visit":
            visit.append((prop, f))
        elif prop.kind == "page":
            page.append(f)
        elif prop.kind == "event":
            event.append((prop, f))
        else:
            if f.op not in ("==", "~"):
                raise QueryError("event:goal can only be filtered with == or ~ (is or contains)")
            goal.append(f)
    for behaviour in q.behaviours:
        _check_behaviour(behaviour)
    groups = [tuple((_alternative(f), f) for f in group.filters) for group in q.either]
    visit_either = tuple(g for g in groups if all(p.kind == "visit" for p, _ in g))
    event_either = tuple(g for g in groups if g not in visit_either)
    then_by = _second_property(q, breakdown)
    found = Needs(
        q, metrics, breakdown, tuple(visit), tuple(page), tuple(event), tuple(goal), visit_either, event_either, then_by
    )
    _refuse_combinations(found)
    return found


def _second_property(q: StatsQuery, breakdown: Property | None) -> Property | None:
    """A breakdown's second property: visit, page or event properties, none with a parent."""
    if q.then_by is None:
        return None
    second = find(q.then_by)
    for prop in (breakdown, second):
        if prop is None or prop.kind == "goal" or prop.parent:
            raise QueryError("a breakdown by two properties takes visit, page and event properties (not versions)")
    return second


def _alternative(f: Filter) -> Property:
    """A filter among alternatives: on any property but a goal (goals are filtered at the top level)."""
    prop = find(f.prop)
    if f.op not in OPERATORS or not f.values:
        raise QueryError(f"the filter on {f.prop[:80]} needs an operator and a value")
    if prop.kind == "goal":
        raise QueryError("event:goal can only be filtered at the top level, not among alternatives")
    return prop


def _check_behaviour(behaviour: Behaviour) -> None:
    """A behavioural filter names events: by page, event properties or goals."""
    if not behaviour.filters:
        raise QueryError("a behavioural filter (has_done, has_not_done) needs a filter")
    for f in behaviour.filters:
        if f.op not in OPERATORS or not f.values:
            raise QueryError(f"the behavioural filter on {f.prop[:80]} needs an operator and a value")
        prop = find(f.prop)
        if prop.kind == "visit":
            raise QueryError(
                f"behavioural filters (has_done, has_not_done) take event properties and goals, not {f.prop[:80]}"
            )
        if prop.kind == "goal" and f.op not in ("==", "~"):
            raise QueryError("event:goal can only be filtered with == or ~ (is or contains)")


def _refuse_combinations(n: Needs) -> None:
    if n.visit_metrics and n.event_only:
        what = (
            f"breakdown by {n.breakdown.name}"
            if n.breakdown is not None and n.breakdown.kind in ("event", "goal")
            else "alternatives (or) that name an event dimension"
            if n.event_either
            else "a filter on event:name, event:hostname, event:goal or event:props"
        )
        raise QueryError(f"session metrics ({', '.join(n.visit_metrics)}) cannot be queried with {what}")
    by_page = n.breakdown is not None and n.breakdown.kind == "page"
    broken = {
        Refusal.PAGE_FILTER: bool(n.page_filters),
        Refusal.BREAKDOWN: n.breakdown is not None,
        Refusal.NO_GOAL: not n.goal_filters and not n.by_goal,
        Refusal.NO_PAGE: not n.page_filters and not by_page,
        # Engagement events are not joined to visits: no other property can narrow them.
        Refusal.NOT_ONLY_PAGES: bool(
            n.visit_filters or n.event_filters or n.goal_filters or n.query.behaviours or n.query.either
        )
        or (n.breakdown is not None and not by_page)
        or n.then_by is not None,
        Refusal.NO_REVENUE_GOAL: not n.goal_filters,
    }
    for metric in n.metrics:
        for rule in metric.refused:
            if broken[rule]:
                raise QueryError(metric.refusal(rule))


def make_plan(q: StatsQuery, page: tuple[int, int] | None = None) -> Plan:
    """Validate ``q`` and decide where it is answered. ``page``: a breakdown's (limit,
    offset), sorted by its first metric."""
    n = needs(q)
    shape = Shape(interval=q.interval, prop=n.breakdown, zone=q.timezone, then_by=n.then_by)
    source, reason = _source(n, shape)
    rollup = n.rollup_rows() if source == AGGREGATES and shape.interval != "hour" else None
    sort = Page(n.metrics[0], *page) if page is not None else None
    return Plan(n, shape, source, reason, rollup, sort)


def plan(q: StatsQuery) -> str:
    """Where ``q`` is answered: "aggregates" or "events"."""
    return make_plan(q).source


def _source(n: Needs, shape: Shape) -> tuple[str, str]:
    """The path that answers it, and why (Plausible's ``table_decider``)."""
    if n.query.source is not None:
        return n.query.source, "asked for"
    if not (_on_hour(n.query.start) and _on_hour(n.query.end)):
        # A zone whose offset is not whole hours (+05:45) has its midnight off the hour.
        return EVENTS, "the period does not start and end on whole hours, which the aggregates hold"
    if n.plain or n.on_visits:
        return AGGREGATES, "built visits answer any visit-level combination"
    if n.rollup_rows() is not None and shape.interval != "hour":
        return AGGREGATES, "rolled-up days, and raw events for the hours after them"
    if n.joins_visits:
        return AGGREGATES, "raw events, joined to the built visits rather than cutting them"
    return EVENTS, "every hour from raw events either way"


def utc(moment: datetime) -> datetime:
    """An instant as an aware UTC datetime (a naive one is taken as UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _at_midnight(moment: datetime, zone: str) -> bool:
    return day_start(moment, zone) == moment


def _on_hour(moment: datetime) -> bool:
    return moment.timestamp() % HOUR_SECONDS == 0
