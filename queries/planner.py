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

from queries.model import METRICS, OPERATORS, VISIT_METRICS, Filter, QueryError, StatsQuery
from queries.properties import PAIR_BREAKDOWNS, PAIR_FILTERS, Property, find

HOUR_SECONDS = 3600


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
    breakdown: Property | None
    visit_filters: tuple[tuple[Property, Filter], ...]
    page_filters: tuple[Filter, ...]
    event_filters: tuple[tuple[Property, Filter], ...]
    goal_filters: tuple[Filter, ...]

    @property
    def filtered(self) -> bool:
        return bool(self.visit_filters or self.page_filters or self.event_filters or self.goal_filters)

    @property
    def plain(self) -> bool:
        """No filter and no breakdown: the site's totals."""
        return not self.filtered and self.breakdown is None

    @property
    def visit_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.query.metrics if m in VISIT_METRICS)

    @property
    def on_visits(self) -> bool:
        """Answered from visits: it asks a visit metric, filters on a visit property or
        breaks down by one, and uses no event-only property (name, hostname, props,
        goal), which visits do not hold."""
        uses_visits = bool(self.visit_metrics or self.visit_filters) or (
            self.breakdown is not None and self.breakdown.kind == "visit")
        return uses_visits and not self.event_only

    @property
    def event_only(self) -> bool:
        """It filters on or breaks down by a property only events hold."""
        return bool(self.event_filters or self.goal_filters) or (
            self.breakdown is not None and self.breakdown.kind in ("event", "goal"))

    @property
    def page_scoped(self) -> bool:
        """Bounce rate counts only the visits entering on the page(s) concerned."""
        return bool(self.page_filters) or (self.breakdown is not None and self.breakdown.kind == "page")

    def rollup_rows(self) -> RollupRows | None:
        """The rolled-up rows that answer it on whole days, if any."""
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
        holds this breakdown under, if it does."""
        others = [f for f in self.query.filters if f.prop != self.breakdown.name]
        if len(others) != 1 or self.breakdown.name not in PAIR_BREAKDOWNS:
            return None
        f = others[0]
        if f.op != "==" or len(f.values) != 1 or f.prop not in PAIR_FILTERS:
            return None
        prop = find(f.prop)
        return prop, "" if f.values[0] == prop.blank else f.values[0]


def needs(q: StatsQuery) -> Needs:
    """The query sorted out, or QueryError for what Plausible refuses too."""
    q = replace(q, start=utc(q.start), end=utc(q.end))
    if not q.metrics:
        raise QueryError("at least one metric is needed")
    for metric in q.metrics:
        if metric not in METRICS:
            raise QueryError(f"the metric '{metric[:50]}' is not recognized")
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
            if f.op == "!=":
                raise QueryError("event:goal can only be filtered with == or ~")
            goal.append(f)
    found = Needs(q, breakdown, tuple(visit), tuple(page), tuple(event), tuple(goal))
    _refuse_combinations(found)
    return found


def _refuse_combinations(n: Needs) -> None:
    q = n.query
    if n.visit_metrics and n.event_only:
        what = (f"breakdown by {n.breakdown.name}" if n.breakdown is not None and n.breakdown.kind in ("event", "goal")
                else "a filter on event:name, event:hostname, event:goal or event:props")
        raise QueryError(f"session metrics ({', '.join(n.visit_metrics)}) cannot be queried with {what}")
    if "views_per_visit" in q.metrics:
        if n.page_filters:
            raise QueryError("metric views_per_visit cannot be queried with a filter on event:page")
        if n.breakdown is not None:
            raise QueryError("metric views_per_visit is not supported in breakdown queries")
    if "conversion_rate" in q.metrics and not n.goal_filters and (n.breakdown is None or n.breakdown.kind != "goal"):
        raise QueryError("metric conversion_rate needs a filter on event:goal or a breakdown by event:goal")


def plan(q: StatsQuery) -> str:
    """Where ``q`` is answered: "aggregates" or "events"."""
    if q.source is not None:
        return q.source
    n = needs(q)
    if not (_on_hour(n.query.start) and _on_hour(n.query.end)):
        return "events"  # the aggregates hold whole hours
    if n.plain or n.on_visits:
        return "aggregates"  # built visits answer any visit-level combination
    if n.rollup_rows() is not None and q.interval != "hour":
        return "aggregates"  # the rolled-up days, and raw events for the hours after them
    if n.visit_filters or (n.breakdown is not None and n.breakdown.kind == "visit"):
        return "aggregates"  # raw events, joined to the built visits rather than cutting them
    return "events"  # every hour from raw events either way


def utc(moment: datetime) -> datetime:
    """An instant as an aware UTC datetime (a naive one is taken as UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _on_hour(moment: datetime) -> bool:
    return moment.timestamp() % HOUR_SECONDS == 0
