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

Two ways, with the same rules and numbers (``tests/test_funnel_paths.py``):

* from the built visits (``AGGREGATES``): each visit the builder has written keeps
  its events' paths and names in the visit's order (``sequence_paths``,
  ``sequence_names``, migration 0025); ``arrayMap`` makes each one's bit mask of the
  steps it completes, ``arrayFold`` walks the masks to the visit's furthest step.
  The visits not written yet (their last event at or after the builder's watermark)
  and those written before 0025 without a sequence (``rollups.sequences`` gives them
  one) are cut from the events as below, and both halves' visitors counted together;
* from the events (``EVENTS``: a query with an event filter, which the sequences do
  not hold, or ``source="events"``): one pass over the events of the period's local
  days. Per visitor and day, a GROUP BY collects each event's time and step mask (and
  the visit properties filtered on), sorts them by the visit order and cuts them into
  visits as ``queries.sessions`` does; ``arrayFold`` walks each visit as above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from queries.days import day_end, day_start, zone_sql
from queries.model import QueryError, StatsQuery
from queries.planner import AGGREGATES, EVENTS, Needs, needs
from queries.properties import VISIT_COLUMNS, Property
from queries.relations import build_state
from queries.sessions import COUNTED, EVENT_MARK, GAP_MS, IN_ORDER, SEPARATOR, SUBSTITUTE, VISITOR_KEY
from queries.sql import Params, all_of, epoch_ms, event_expression, matches
from storage.clickhouse import Store
from storage.funnels import Funnel, Step

KEPT = 1 << 15  # the mask bit of an event that passes the page and event filters
REASONS = {
    EVENTS: "a funnel orders each visit's events: one pass over the raw events of the period's local days",
    AGGREGATES: "each built visit's sequence of pages and events (beacon.visits); the events of the visits "
    "still open, or built without a sequence",
}
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
    source = funnel_source(n)
    state = build_state(store) if source == AGGREGATES else None
    if state is None or state.watermark is None or q.start >= state.watermark:
        source, levels = EVENTS, _levels_from_events(n, chosen.steps, params)
    else:
        levels = _levels_from_visits_and_events(n, chosen.steps, params, state.watermark, state.unsequenced_before)
    ((all_visitors, *reached),) = store.rows(_counted(levels, len(chosen.steps)), params.values)
    return FunnelFigures(chosen.name, figures(chosen.steps, reached), all_visitors, source)


def funnel_source(n: Needs) -> str:
    """The sequences hold paths and names only: an event filter (name, hostname, props)
    needs the events, and so does a query that asks for them."""
    return EVENTS if n.event_filters or n.query.source == EVENTS else AGGREGATES


def funnel_needs(q: StatsQuery) -> Needs:
    """``q``'s filters sorted out, or QueryError for what a funnel refuses."""
    n = needs(replace(q, metrics=("visitors",), property=None, interval=None))
    if n.goal_filters:
        raise QueryError("a funnel cannot be filtered by event:goal: its steps are its goals")
    return n


def describe(q: StatsQuery) -> dict:
    """Where a funnel over ``q`` is answered, in the words of ``Plan.describe`` (``beacon query-plan``)."""
    n = funnel_needs(q)
    source = funnel_source(n)
    return {
        "source": source,
        "reason": REASONS[source],
        "rolled_up_days": None,
        "rows": "events, cut into visits" if source == EVENTS else "built visits' sequences, and open visits' events",
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


def _counted(levels: str, last: int) -> str:
    """One row: the visitors of the visits kept, then those who reached each step."""
    counts = ", ".join(f"uniqExactIf(visitor, level >= {k})" for k in range(1, last + 1))
    return f"SELECT uniqExact(visitor), {counts}\nFROM ({levels})"


def _walk(masks: str, last: int) -> str:
    """A visit's furthest step from its events' masks, in the visit's order."""
    step_up = f"if(reached < {last} AND bitTest(m, reached), toUInt8(reached + 1), reached)"
    return f"arrayFold((reached, m) -> {step_up}, {masks}, toUInt8(0))"


def _levels_from_visits_and_events(
    n: Needs, steps: tuple[Step, ...], params: Params, mark: datetime, unsequenced_before: datetime | None
) -> str:
    """Rows (visitor, level) of the visits kept: the built ones with a sequence from
    beacon.visits, the others (open: their last event at or after the watermark
    ``mark``; built without a sequence: before ``unsequenced_before``) from the events
    of their days."""
    q, zone = n.query, n.query.timezone
    missing = unsequenced_before if unsequenced_before and unsequenced_before > q.start else None
    mark_ms = params.bind(epoch_ms(mark), "Int64")
    missing_ms = params.bind(epoch_ms(missing), "Int64") if missing else None
    built = [
        f"site = {params.text(q.site)}",
        f"start >= {params.time(q.start)}",
        f"start < {params.time(q.end)}",
        f"last < fromUnixTimestamp64Milli({mark_ms}, 'UTC')",
    ]
    if missing_ms:
        built.append(f"last >= fromUnixTimestamp64Milli({missing_ms}, 'UTC')")
    built += [matches(p.column, f, params, p.blank) for p, f in n.visit_filters]
    levels = [_levels_from_sequences(n, steps, params, all_of(built))]
    ranges, cut = [], []
    if missing:  # the local days of the visits built without a sequence
        ranges.append((day_start(q.start, zone), day_end(min(missing, q.end), zone)))
        cut.append(f"v_ms[-1] < {missing_ms}")
    if q.end > day_start(mark, zone):  # the local days of the open visits
        ranges.append((max(day_start(q.start, zone), day_start(mark, zone)), day_end(q.end, zone)))
        cut.append(f"v_ms[-1] >= {mark_ms}")
    if ranges:
        levels.append(_levels_from_events(n, steps, params, ranges, " OR ".join(cut)))
    return "\nUNION ALL\n".join(levels)


def _levels_from_sequences(n: Needs, steps: tuple[Step, ...], params: Params, where: str) -> str:
    """Rows (visitor, level) of the built visits matching ``where`` that are kept."""
    if not n.page_filters and all(_searchable(step) for step in steps):
        return _searched(steps, params, where)
    return _walked(n, steps, params, where)


def _searched(steps: tuple[Step, ...], params: Params, where: str) -> str:
    """Each step searched in ``sequence`` from the end of the entry the previous step
    found: the first match is the greedy step of the rules."""
    found, start = [], "1"
    for k, step in enumerate(steps, 1):
        entry = SEPARATOR + (step.value if step.kind == "page" else EVENT_MARK + step.value)
        search = f"position(sequence, {params.text(entry + SEPARATOR)}, {start})"
        found.append(f"{search} AS found_{k}" if k == 1 else f"if(found_{k - 1} = 0, 0, {search}) AS found_{k}")
        start = f"found_{k} + {len(entry.encode())}"  # bytes: the separator that ends the entry found
    level = " + ".join(f"(found_{k} > 0)" for k in range(1, len(steps) + 1))
    searched = f"SELECT visitor, {', '.join(found)}, toUInt8({level}) AS level FROM beacon.visits WHERE {where}"
    return f"SELECT visitor, level FROM ({searched})"


def _walked(n: Needs, steps: tuple[Step, ...], params: Params, where: str) -> str:
    """Each visit's events' masks from the two arrays, walked in order (wildcards, page filters)."""
    if n.page_filters:  # a visit counts when one of its events passes them
        passes = all_of([matches("path", f, params) for f in n.page_filters])
        where += f" AND arrayExists(path -> {passes}, sequence_paths)"
    masks = f"arrayMap((path, name) -> {_mask_of_step(n, steps, params)}, sequence_paths, sequence_names)"
    # Most visits never do the first step: a look-up in their sequence settles them at 0
    # (``if`` evaluates the walk only for the others).
    level = f"if({_may_start(steps[0], params)}, {_walk(masks, len(steps))}, 0)"
    return f"SELECT visitor, {level} AS level FROM beacon.visits WHERE {where}"


def _searchable(step: Step) -> bool:
    """A step found by a search of ``sequence``: an exact path or name holding none of
    the characters that separate or stand for them there."""
    return not (step.kind == "page" and "*" in step.value) and not any(
        c in step.value for c in (SEPARATOR, EVENT_MARK, SUBSTITUTE)
    )


def _levels_from_events(
    n: Needs,
    steps: tuple[Step, ...],
    params: Params,
    ranges: list[tuple[datetime, datetime]] | None = None,
    visits_kept: str = "1",
) -> str:
    """Rows (visitor, level) of the visits kept, cut from the events of ``ranges``
    (whole local days; default: the period's) and kept by ``visits_kept`` too."""
    q = n.query
    zone = q.timezone
    ranges = ranges or [(day_start(q.start, zone), day_end(q.end, zone))]
    times = " OR ".join(f"(ts >= {params.time(lo)} AND ts < {params.time(hi)})" for lo, hi in ranges)
    where = f"site = {params.text(q.site)} AND ({times}) AND {COUNTED}"
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
        visits_kept,
    ]
    kept += [matches(_visit_value(p), f, params, p.blank) for p, f in n.visit_filters]
    return f"""
    SELECT visitor, {_walk("v_mask", len(steps))} AS level
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
    WHERE {all_of(kept)}"""


def _mask(n: Needs, steps: tuple[Step, ...], params: Params) -> str:
    """An event's bits: KEPT when it passes the page and event filters, and then bit i
    for each step i it completes."""
    passes = [matches("path", f, params) for f in n.page_filters]
    passes += [matches(event_expression(p, params), f, params) for p, f in n.event_filters]
    bits = " + ".join(f"({step_condition(step, params)}) * {1 << i}" for i, step in enumerate(steps))
    return f"toUInt16(if({all_of(passes)}, {KEPT} + {bits}, 0))"


def _mask_of_step(n: Needs, steps: tuple[Step, ...], params: Params) -> str:
    """The same bits for one step of a sequence, whose event is ``path`` and ``name``
    (``sessions.SEQUENCE_NAME``: '' for a pageview); no event filter gets here."""
    passes = [matches("path", f, params) for f in n.page_filters]
    bits = " + ".join(f"({sequence_condition(step, params)}) * {1 << i}" for i, step in enumerate(steps))
    return f"toUInt16(if({all_of(passes)}, {KEPT} + {bits}, 0))"


def step_condition(step: Step, params: Params) -> str:
    """An event that completes ``step``: the named event, or a pageview of the path
    (``*`` and ``**`` match any characters, '/' included, as in Plausible's page goals)."""
    if step.kind == "event":
        return f"type = 'event' AND name = {params.text(step.value)}"
    if "*" not in step.value:
        return f"type = 'pageview' AND path = {params.text(step.value)}"
    return f"type = 'pageview' AND match(path, {params.text(wildcard_pattern(step.value))})"


def _may_start(step: Step, params: Params) -> str:
    """Whether a sequence may hold ``step`` (a superset: a page step's path may be a
    custom event's page), tested on the whole array at once."""
    if step.kind == "event":
        return f"has(sequence_names, {params.text(step.value)})"
    if "*" not in step.value:
        return f"has(sequence_paths, {params.text(step.value)})"
    return f"arrayExists(path -> match(path, {params.text(wildcard_pattern(step.value))}), sequence_paths)"


def sequence_condition(step: Step, params: Params) -> str:
    """``step_condition`` on a sequence's ``path`` and ``name``."""
    if step.kind == "event":
        return f"name = {params.text(step.value)}"
    if "*" not in step.value:
        return f"name = '' AND path = {params.text(step.value)}"
    return f"name = '' AND match(path, {params.text(wildcard_pattern(step.value))})"


def wildcard_pattern(path: str) -> str:
    """A page path with wildcards as an anchored RE2 pattern."""
    literal = (re.escape(piece) for piece in re.split(r"\*+", path))
    return "^" + ".*".join(literal) + "$"


def _visit_filter_columns(n: Needs) -> list[str]:
    return list(dict.fromkeys(p.column for p, _ in n.visit_filters))


def _visit_value(prop: Property) -> str:
    """A visit's value of ``prop``: its first event's, or its entry or exit page."""
    return _VISIT_PAGES.get(prop.column, f"v_p_{prop.column}[1]")
