"""Every metric the read side answers, each declared once: what it is made of, how
its value is finished, how it sorts, what refuses it and how its change is given.

The API's list of metrics, the OpenAPI document and the planner read ``METRICS``;
the SQL of each sum lives in ``queries.parts`` (keyed by the sum's name), so a
metric is data here and nothing else. Values are as Plausible's v1 reports them:
counts as integers, bounce_rate in whole percent, visit_duration in whole seconds
(the mean of the visits' durations), views_per_visit with two decimals,
conversion_rate in percent with two decimals; time_on_page in whole seconds and
scroll_depth in whole percent (Plausible's v2 engagement metrics); total_revenue and
average_revenue (beyond Plausible's v1, its v2 names) in the revenue goal's currency,
two decimals. Halves round up, exactly (fractions, not floats); a change rounds a half
away from zero, as Plausible's. Both paths finish their sums here, so they round alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction

from queries.model import QueryError

Value = int | float | None


class Refusal(Enum):
    """The rules that refuse a metric (Plausible refuses the same)."""

    PAGE_FILTER = "a filter on event:page"
    BREAKDOWN = "a breakdown"
    NO_GOAL = "no goal filter and no goal breakdown"
    NO_PAGE = "no event:page filter and no event:page breakdown"
    NOT_ONLY_PAGES = "a filter or breakdown on a property other than event:page"
    NO_REVENUE_GOAL = "no goal filter (the engine checks its goals are revenue goals of one currency)"


class Change(Enum):
    """How ``compare=previous_period`` gives a metric's change (Plausible's)."""

    PERCENT = "percent"  # (now − before) / before, in whole percent
    POINTS = "points"  # now − before, in whole points; none when before is 0 (bounce rate)
    POINTS_TENTHS = "points_tenths"  # now − before, to a tenth of a point (conversion rate)


@dataclass(frozen=True)
class Metric:
    """A count of one sum (``denominator`` None), or a ratio of two sums, scaled and
    rounded. ``scoped``: the sums it divides when the query is scoped to pages
    (bounce rate counts only the visits entering on the pages concerned). A metric
    with ``of_base`` divides by the visitors of the same question without its goal
    filters (conversion rate), which the query kinds ask for separately."""

    name: str
    label: str  # the dashboard's column heading
    unit: str  # count | percent | seconds | decimal: how the dashboard shows it
    description: str  # the API documentation's sentence
    numerator: str
    denominator: str | None = None
    scale: int | Fraction = 1  # revenue sums count thousandths: Fraction(1, 1000)
    digits: int = 0
    scoped: tuple[str, str] | None = None
    of_visits: bool = False  # made of visits: an event-only property refuses it (Plausible's session metrics)
    of_base: bool = False
    # What a ratio is with nothing to divide, per answer kind (else 0, or 0.0 with decimals).
    empty: Mapping[str, Value] = field(default_factory=dict)
    refused: tuple[Refusal, ...] = ()
    change: Change = Change.PERCENT
    short: str = ""  # a narrow column's heading, where the label is too long for one

    def sums(self, page_scoped: bool) -> tuple[str, str | None]:
        """The (numerator, denominator) sums of a row it is made of."""
        if page_scoped and self.scoped is not None:
            return self.scoped
        return self.numerator, self.denominator

    def needed(self, page_scoped: bool) -> tuple[str, ...]:
        """The sums the query must compute for it (a base is asked separately)."""
        numerator, denominator = self.sums(page_scoped)
        return (numerator,) if denominator is None or self.of_base else (numerator, denominator)

    def value(self, sums: Mapping[str, int], page_scoped: bool, base: int | None, kind: str) -> Value:
        numerator, denominator = self.sums(page_scoped)
        counted = self.denominator is None and not self.of_base
        if counted and self.scale == 1:
            return int(sums[numerator])
        divisor = 1 if counted else base if self.of_base else sums[denominator]
        if not divisor:
            return self.empty.get(kind, 0.0 if self.digits else 0)
        rounded = half_up(self.scale * Fraction(int(sums[numerator]), int(divisor)), self.digits)
        return int(rounded) if self.digits == 0 else float(rounded)

    def refusal(self, rule: Refusal) -> str:
        """Plausible's words for a refused metric."""
        if rule is Refusal.PAGE_FILTER:
            return f"metric {self.name} cannot be queried with a filter on event:page"
        if rule is Refusal.BREAKDOWN:
            return f"metric {self.name} is not supported in breakdown queries"
        if rule is Refusal.NO_PAGE:
            return f"metric {self.name} can only be queried with event:page filters or dimensions"
        if rule is Refusal.NOT_ONLY_PAGES:
            return f"metric {self.name} can only be queried with filters on event:page and a breakdown by event:page"
        if rule is Refusal.NO_REVENUE_GOAL:
            return revenue_refusal(self.name)
        return f"metric {self.name} needs a filter on event:goal or a breakdown by event:goal"

    def changed(self, now: Value, before: Value) -> Value:
        """Plausible's ``change`` for this metric."""
        if now is None or before is None:
            return None
        # Values are decimals as shown (2.18, 41): exact from their text, not their binary float.
        difference = Fraction(str(now)) - Fraction(str(before))
        if self.change is Change.POINTS:
            return None if before == 0 else int(away_from_zero(difference))
        if self.change is Change.POINTS_TENTHS:
            return float(away_from_zero(difference, 1))
        if before == 0:
            return 100 if now > 0 else 0
        return int(away_from_zero(difference / Fraction(str(before)) * 100))


def revenue_refusal(name: str) -> str:
    return f"metric {name} needs a filter on event:goal naming revenue goals of one currency"


def half_up(x: Fraction, digits: int = 0) -> Fraction:
    """``x`` rounded to ``digits`` decimals, a half up, exactly (87 / 40 = 2.175 gives 2.18;
    in floats 217.49999… gave 2.17)."""
    scale = 10**digits
    return Fraction(math.floor(x * scale + Fraction(1, 2)), scale)


def away_from_zero(x: Fraction, digits: int = 0) -> Fraction:
    """``x`` rounded to ``digits`` decimals, a half away from zero (Plausible's change:
    −12.5 gives −13, where Python's round() gives −12)."""
    magnitude = half_up(abs(x), digits)
    return magnitude if x >= 0 else -magnitude


_NO_DATA: Mapping[str, Value] = {"aggregate": None, "timeseries": None, "breakdown": None}

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("visitors", "Visitors", "count", "Unique visitors.", "visitors"),
        Metric(
            "visits",
            "Visits",
            "count",
            "Visits (sessions: 30 minutes of inactivity end one).",
            "visits",
            of_visits=True,
        ),
        Metric("pageviews", "Pageviews", "count", "Pageview events.", "pageviews"),
        Metric(
            "views_per_visit",
            "Views per visit",
            "decimal",
            "Pageviews per visit, two decimals.",
            "pageviews",
            "visits",
            digits=2,
            of_visits=True,
            refused=(Refusal.PAGE_FILTER, Refusal.BREAKDOWN),
        ),
        Metric(
            "bounce_rate",
            "Bounce rate",
            "percent",
            "Visits of one pageview and nothing else, in whole percent.",
            "bounces",
            "visits",
            scale=100,
            scoped=("entry_bounces", "entry_visits"),
            of_visits=True,
            empty={"breakdown": None},
            change=Change.POINTS,
        ),
        Metric(
            "visit_duration",
            "Visit duration",
            "seconds",
            "Mean visit duration, in whole seconds.",
            "duration",
            "visits",
            of_visits=True,
            empty={"timeseries": None, "breakdown": None},
        ),
        Metric("events", "Events", "count", "Events of every kind, pageviews included.", "events"),
        Metric(
            "conversion_rate",
            "Conversion rate",
            "percent",
            "Converting visitors over all visitors, in percent with two decimals.",
            "visitors",
            scale=100,
            digits=2,
            of_base=True,
            refused=(Refusal.NO_GOAL,),
            change=Change.POINTS_TENTHS,
        ),
        # Engagement (docs/analytics.md): per page, each visitor-day that sent engagement
        # events on it counts once; nothing to divide is null, as Plausible's.
        Metric(
            "time_on_page",
            "Time on page",
            "seconds",
            "Mean engaged time on the page per visitor and day with engagement on it, in whole seconds "
            "(with an event:page filter or breakdown only).",
            "engaged_ms",
            "engaged_visitors",
            scale=Fraction(1, 1000),
            empty=_NO_DATA,
            refused=(Refusal.NO_PAGE, Refusal.NOT_ONLY_PAGES),
            short="Time",
        ),
        Metric(
            "scroll_depth",
            "Scroll depth",
            "percent",
            "Mean of the deepest scroll (0-100) per visitor and day on the page, in whole percent "
            "(with an event:page filter or breakdown only).",
            "scroll_sum",
            "scroll_visitors",
            empty=_NO_DATA,
            refused=(Refusal.NO_PAGE, Refusal.NOT_ONLY_PAGES),
            short="Scroll",
        ),
        Metric(
            "total_revenue",
            "Revenue",
            "money",
            "The revenue of the conversions, in the revenue goal's currency, two decimals (needs a filter on"
            " revenue goals of one currency; amounts sent in another currency are not counted).",
            "revenue",
            scale=Fraction(1, 1000),
            digits=2,
            refused=(Refusal.NO_REVENUE_GOAL,),
        ),
        Metric(
            "average_revenue",
            "Average revenue",
            "money",
            "The revenue per conversion that carried revenue in the goal's currency, two decimals; null"
            " without one (Plausible's average over the events with revenue).",
            "revenue",
            "paid",
            scale=Fraction(1, 1000),
            digits=2,
            empty={"aggregate": None, "timeseries": None, "breakdown": None},
            refused=(Refusal.NO_REVENUE_GOAL,),
        ),
    )
}


def find_metric(name: str) -> Metric:
    if name not in METRICS:
        raise QueryError(f"the metric '{name[:50]}' is not recognized")
    return METRICS[name]


def values(
    names: tuple[str, ...], sums: Mapping[str, int], page_scoped: bool, base: int | None, kind: str
) -> dict[str, Value]:
    """The finished value of each metric named, from one row's sums."""
    return {name: METRICS[name].value(sums, page_scoped, base, kind) for name in names}
