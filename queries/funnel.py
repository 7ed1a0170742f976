"""A funnel's figures: how many visitors did its steps in order within one visit.

Rules (docs/analytics.md, "Funnels", says where they differ from Plausible's):

* A visit reaches step k when it holds events completing steps 1..k in that order,
  each step on an event after the previous step's event (visit order: time, then
  the tie-break of ``queries.sessions``). Steps are matched greedily: the first
  event completing the next step advances the visit, so a step repeated, or one
  done before an earlier step, changes nothing.
* A visitor reaches step k when one of their visits does; a step's visitors are
  those who reached it (so they never grow along the funnel).
* Visits are beacon's (30 minutes, the site's local day) and count when they start
  in the period. A visit filter keeps the visits whose property matches; a page or
  event filter keeps the events that match, as in Plausible: only those complete
  steps. ``all_visitors``: the visitors of the visits kept with such an event.

How: one pass over the events of the period's local days. Per visitor and day, a
GROUP BY collects each event's time and a bit mask of the steps it completes (and
the visit properties filtered on), sorts them by the visit order and cuts them into
visits as ``queries.sessions`` does; ``arrayFold`` walks each visit's masks to its
furthest step, and one more aggregation counts the visitors per step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from queries.days import day_end, day_start, zone_sql
from queries.model import QueryError, StatsQuery
from queries.planner import EVENTS, Needs, needs
from queries.properties import VISIT_COLUMNS, Property
from queries.sessions import COUNTED, GAP_MS, IN_ORDER, VISITOR_KEY
from queries.sql import Params, all_of, epoch_ms, event_expression, matches
from storage.clickhouse import Store
from storage.funnels import Funnel, Step

KEPT = 1 << 15  # the mask bit of an event that passes the page and event filters
REASON = "a funnel orders each visit's events: one pass over the raw events of the period's local days"
# Visit properties that are not a column of the visit's first event.
_VISIT_PAGES = {
    "entry_page": "arrayFirst((p, pv) -> pv, v_path, v_pv)",
    "exit_page": "arrayLast((p, pv) -> pv, v_path, v_pv)",
}


@dataclass(frozen=True)
class StepFigures:
    label: str
    visitors: int
    conversion_rate: float  # % of the first step's visitors
    conversion_rate_step: float  # % of the previous step's visitors
    dropoff: int  # the previous step's visitors who did not reach this one
    dropoff_percentage: float  # % of the previous step's visitors


@dataclass(frozen=True)
class FunnelFigures:
    name: str
    steps: tuple[StepFigures, ...]
    all_visitors: int
    source: str = EVENTS  # the path that answered (planner's vocabulary)

    @property
    def entering_visitors(self) -> int:
        return self.steps[0].visitors

    @property
    def never_entering_visitors(self) -> int:
        return self.all_visitors - self.entering_visitors

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "steps": [vars(step) for step in self.steps],
            "all_visitors": self.all_visitors,
            "entering_visitors": self.entering_visitors,
            "entering_visitors_percentage": percentage(self.entering_visitors, self.all_visitors),
            "never_entering_visitors": self.never_entering_visitors,
            "never_entering_visitors_percentage": percentage(self.never_entering_visitors, self.all_visitors),
        }


def funnel(store: Store, q: StatsQuery, chosen: Funnel) -> FunnelFigures:
    """``chosen``'s figures over ``q``'s site, period and filters (``q.metrics`` unused)."""
    n = funnel_needs(q)
    params = Params()
    ((all_visitors, *reached),) = store.rows(funnel_sql(n, chosen.steps, params), params.values)
    return FunnelFigures(chosen.name, figures(chosen.steps, reached), all_visitors)


def funnel_needs(q: StatsQuery) -> Needs:
    """``q``'s filters sorted out, or QueryError for what a funnel refuses."""
    n = needs(replace(q, metrics=("visitors",), property=None, interval=None))
    if n.goal_filters:
        raise QueryError("a funnel cannot be filtered by event:goal: its steps are its goals")
    return n


def describe(q: StatsQuery) -> dict:
    """Where a funnel over ``q`` is answered, in the words of ``Plan.describe`` (``beacon query-plan``)."""
    n = funnel_needs(q)
    return {
        "source": EVENTS,
        "reason": REASON,
        "rolled_up_days": None,
        "rows": "events, cut into visits",
        "visit_filters": [p.name for p, _ in n.visit_filters],
        "event_filters": [f.prop for f in n.page_filters] + [p.name for p, _ in n.event_filters],
    }


def figures(steps: tuple[Step, ...], reached: list[int]) -> tuple[StepFigures, ...]:
    """Each step's figures from the visitors who reached it."""
    out, first = [], reached[0]
    for i, (step, visitors) in enumerate(zip(steps, reached)):
        previous = reached[i - 1] if i else visitors
        dropoff = previous - visitors
        out.append(
            StepFigures(
                step.label,
                visitors,
                percentage(visitors, first),
                percentage(visitors, previous),
                dropoff,
                percentage(dropoff, previous),
            )
        )
    return tuple(out)


def percentage(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def funnel_sql(n: Needs, steps: tuple[Step, ...], params: Params) -> str:
    """One row: the visitors of the visits kept, then those who reached each step."""
    q = n.query
    zone = q.timezone
    where = (
        f"site = {params.text(q.site)} AND ts >= {params.time(day_start(q.start, zone))} "
        f"AND ts < {params.time(day_end(q.end, zone))} AND {COUNTED}"
    )
    read = {"ms": "toUnixTimestamp64Milli(ts)", "mask": _mask(n, steps, params)}
    columns = _visit_filter_columns(n)
    if any(c in _VISIT_PAGES for c in columns):
        read |= {"path": "path", "pv": "type = 'pageview'"}
    read |= {f"p_{c}": VISIT_COLUMNS[c] for c in columns if c not in _VISIT_PAGES}
    in_order = ",\n           ".join(
        f"arraySort((x, k) -> k, groupArray({column}), keys) AS o_{name}" for name, column in read.items()
    )
    cut = ",\n           ".join(f"arraySplit((x, c) -> c, o_{name}, starts) AS s_{name}" for name in read)
    per_visit = ", ".join(f"s_{name} AS v_{name}" for name in read)
    kept = [
        f"v_ms[1] >= {params.bind(epoch_ms(q.start), 'Int64')}",
        f"v_ms[1] < {params.bind(epoch_ms(q.end), 'Int64')}",
        "arrayExists(m -> m != 0, v_mask)",
    ]
    kept += [matches(_visit_value(p), f, params, p.blank) for p, f in n.visit_filters]
    last = len(steps)
    step_up = f"if(reached < {last} AND bitTest(m, reached), toUInt8(reached + 1), reached)"
    level = f"arrayFold((reached, m) -> {step_up}, v_mask, toUInt8(0))"
    counts = ", ".join(f"uniqExactIf(visitor, level >= {k})" for k in range(1, last + 1))
    return f"""
SELECT uniqExact(visitor), {counts}
FROM (
    SELECT visitor, {level} AS level
    FROM (
        SELECT {VISITOR_KEY} AS visitor,
               groupArray({IN_ORDER}) AS keys,
               {in_order},
               arrayMap((gap, i) -> i = 1 OR gap > {GAP_MS}, arrayDifference(o_ms), arrayEnumerate(o_ms)) AS starts,
               {cut}
        FROM beacon.events
        WHERE {where}
        GROUP BY visitor, toDate(ts, {zone_sql(zone)})
    )
    ARRAY JOIN {per_visit}
    WHERE {all_of(kept)}
)"""


def _mask(n: Needs, steps: tuple[Step, ...], params: Params) -> str:
    """An event's bits: KEPT when it passes the page and event filters, and then bit i
    for each step i it completes."""
    passes = [matches("path", f, params) for f in n.page_filters]
    passes += [matches(event_expression(p, params), f, params) for p, f in n.event_filters]
    bits = " + ".join(f"({step_condition(step, params)}) * {1 << i}" for i, step in enumerate(steps))
    return f"toUInt16(if({all_of(passes)}, {KEPT} + {bits}, 0))"


def step_condition(step: Step, params: Params) -> str:
    """An event that completes ``step``: the named event, or a pageview of the path
    (``*`` and ``**`` match any characters, '/' included, as in Plausible's page goals)."""
    if step.kind == "event":
        return f"type = 'event' AND name = {params.text(step.value)}"
    if "*" not in step.value:
        return f"type = 'pageview' AND path = {params.text(step.value)}"
    return f"type = 'pageview' AND match(path, {params.text(wildcard_pattern(step.value))})"


def wildcard_pattern(path: str) -> str:
    """A page path with wildcards as an anchored RE2 pattern."""
    literal = (re.escape(piece) for piece in re.split(r"\*+", path))
    return "^" + ".*".join(literal) + "$"


def _visit_filter_columns(n: Needs) -> list[str]:
    return list(dict.fromkeys(p.column for p, _ in n.visit_filters))


def _visit_value(prop: Property) -> str:
    """A visit's value of ``prop``: its first event's, or its entry or exit page."""
    return _VISIT_PAGES.get(prop.column, f"v_p_{prop.column}[1]")
