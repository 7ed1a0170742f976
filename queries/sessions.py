"""Visits (sessions) from events: the one definition, used by the visit builder to
write ``beacon.visits``, by the query layer for the visits still open, and by the
raw path, which cuts visits at query time.

A visit is the events of one visitor on one site with no gap over 30 minutes
(Plausible's rule: a gap of exactly 30 minutes continues the visit), and never
spans two days of its site's time zone (the visitor hash changes at the site's
midnight anyway). Per visit:
entry and exit page (its first and last pageview; empty without one), pageviews,
events, duration (last event − first, whole seconds), bounce (exactly one
pageview and no custom event), and the properties of its first event. Events of
the same millisecond are ordered by a hash of their event id, so every run takes
the same event as first.

``engagement`` events (sent by the tracker when a page is left) are no part of the
read side: they start, extend and un-bounce nothing, and are not counted.

How: one GROUP BY per visitor and day collects each column it reads into an array
(times, pageview flags, and only the paths and properties asked for), sorts each
by one numeric key (time, then a hash of the event id), and ``arraySplit`` cuts
each where a gap exceeds 30 minutes; ARRAY JOIN then makes a row of each visit,
holding only its own events. Measured on the 30 days of 9.9M events of a
100M-event store (2 cores): 0.6 s with no property, 1.0 s with one, 1.7 s with
one and the page arrays. Sorting whole (time, id, flag, path, …) tuples instead
cost 1.7, 2.3 and over 4 s (a tuple sorts slowly, and a visitor-day's arrays were
copied to each of its visits); window functions (lagInFrame, a running sum of
visit starts, a GROUP BY per visit) were slower still.
"""

from __future__ import annotations

from queries.days import UTC, zone_sql
from queries.properties import VISIT_COLUMNS

GAP_MS = 30 * 60 * 1000
# An event without a visitor hash (visitor_id 0: no salt that day) is a visitor of its own.
VISITOR_KEY = "if(visitor_id = 0, cityHash64(event_id), visitor_id)"
COUNTED = "NOT (type = 'event' AND name = 'engagement')"

VISIT_PROPERTIES = tuple(VISIT_COLUMNS)  # referrer, source, utm_*, country, …, language
PAGE_ARRAYS = ("pages", "page_pageviews", "page_events")
# The columns of beacon.visits, in order.
VISIT_FIELDS = (
    ("site", "visitor", "start", "last", "entry_page", "exit_page", "pageviews", "events", "duration", "is_bounce")
    + VISIT_PROPERTIES
    + PAGE_ARRAYS
)
# Each visit's counted events in order: their paths, and their names ('' for a
# pageview). Written by the builder (funnels read them: queries/funnel.py), read by
# nothing else, so they are no part of VISIT_FIELDS, which the other queries read.
# ``sequence``: the same as one string, "\x1e" + entries joined by "\x1e" + "\x1e", an
# entry being the path of a pageview or "\x1d" + the name of a custom event; inside an
# entry those two characters become "\x1f", so that no entry holds a separator.
SEQUENCE_COLUMNS = ("sequence_paths", "sequence_names", "sequence")
BUILT_FIELDS = VISIT_FIELDS + SEQUENCE_COLUMNS
SEQUENCE_NAME = "if(type = 'pageview', '', name)"
SEPARATOR, EVENT_MARK, SUBSTITUTE = "\x1e", "\x1d", "\x1f"
_ENTRY = (
    "if(n = '', translate(p, '\\x1d\\x1e', '\\x1f\\x1f'), concat('\\x1d', translate(n, '\\x1d\\x1e', '\\x1f\\x1f')))"
)

# The order of a visitor-day's events: by time, then by 22 bits of a hash of the
# event id, so that every run takes the same event as first where two share a
# millisecond. One UInt64 (milliseconds fit in 42 bits until 2109): a number sorts
# faster than a tuple.
IN_ORDER = "bitShiftLeft(toUInt64(toUnixTimestamp64Milli(ts)), 22) + bitShiftRight(cityHash64(event_id), 42)"


def visits_from_events(
    events_where: str,
    properties: tuple[str, ...] = VISIT_PROPERTIES,
    page_arrays: bool = True,
    paths: bool = True,
    zone: str = UTC,
    sequences: bool = False,
) -> str:
    """A SELECT of visit rows cut from the counted events matching ``events_where``,
    with the columns of beacon.visits: only the visit ``properties`` asked for, entry
    and exit page if ``paths``, the page arrays if ``page_arrays`` (which implies
    ``paths``), the sequences if ``sequences`` (which implies ``paths``).
    ``events_where`` must select whole visitor-days (of ``zone``, the sites' time
    zone): a visit is cut from the events it is given."""
    paths = paths or page_arrays or sequences
    read = {"ms": "toUnixTimestamp64Milli(ts)", "pv": "type = 'pageview'"}
    if paths:
        read["path"] = "path"
    if sequences:
        read["name"] = SEQUENCE_NAME
    read |= {f"p_{p}": VISIT_COLUMNS[p] for p in properties}
    # Only the first event (its properties, the entry page) depends on how ties are
    # broken; with neither, time alone orders the events.
    key = IN_ORDER if paths or properties else "toUnixTimestamp64Milli(ts)"
    # Per visitor-day: each column read, in time order (o_), then cut into visits
    # (s_: an array of arrays). Only the cut arrays leave the GROUP BY: ARRAY JOIN
    # copies every other column to each visit.
    in_order = ",\n           ".join(
        f"arraySort((x, k) -> k, groupArray({column}), keys) AS o_{name}" for name, column in read.items()
    )
    cut = ",\n           ".join(f"arraySplit((x, c) -> c, o_{name}, starts) AS s_{name}" for name in read)
    per_visit = ", ".join(f"s_{name} AS v_{name}" for name in read)
    columns = ",\n    ".join(
        f"{expr} AS {name}" for expr, name in _visit_columns(properties, paths, page_arrays, sequences)
    )
    return f"""
SELECT
    site, visitor,
    {columns}
FROM (
    SELECT site, {VISITOR_KEY} AS visitor,
           groupArray({key}) AS keys,
           {in_order},
           arrayMap((gap, n) -> n = 1 OR gap > {GAP_MS}, arrayDifference(o_ms), arrayEnumerate(o_ms)) AS starts,
           {cut}
    FROM beacon.events
    WHERE ({events_where}) AND {COUNTED}
    GROUP BY site, visitor, toDate(ts, {zone_sql(zone)})
)
ARRAY JOIN {per_visit}"""


def visit_fields(properties: tuple[str, ...], paths: bool, page_arrays: bool) -> tuple[str, ...]:
    """The columns, in order, of the visits ``visits_from_events`` cuts with these
    choices (a subset of beacon.visits' columns, sequences aside)."""
    return ("site", "visitor", *(name for _, name in _visit_columns(properties, paths, page_arrays, False)))


def _visit_columns(
    properties: tuple[str, ...], paths: bool, page_arrays: bool, sequences: bool
) -> list[tuple[str, str]]:
    """A visit's columns (expression, name) from its events' arrays (v_ms, v_pv, v_path,
    v_name, v_p_<property>)."""
    paths = paths or page_arrays or sequences
    columns = [
        ("fromUnixTimestamp64Milli(v_ms[1], 'UTC')", "start"),
        ("fromUnixTimestamp64Milli(v_ms[-1], 'UTC')", "last"),
    ]
    if paths:  # arrayFirst of no pageview is ''
        columns += [
            ("arrayFirst((page, is_pv) -> is_pv, v_path, v_pv)", "entry_page"),
            ("arrayLast((page, is_pv) -> is_pv, v_path, v_pv)", "exit_page"),
        ]
    columns += [
        ("toUInt32(arraySum(v_pv))", "pageviews"),
        ("toUInt32(length(v_ms))", "events"),
        ("toUInt32(intDiv(v_ms[-1] - v_ms[1], 1000))", "duration"),
        ("toUInt8(pageviews = 1 AND events = 1)", "is_bounce"),
    ]
    columns += [(f"v_p_{p}[1]", p) for p in properties]
    if page_arrays:
        columns += [
            ("arraySort(arrayDistinct(v_path))", "pages"),
            (
                "arrayMap(p -> toUInt32(arrayCount((page, is_pv) -> page = p AND is_pv, v_path, v_pv)), pages)",
                "page_pageviews",
            ),
            ("arrayMap(p -> toUInt32(arrayCount(page -> page = p, v_path)), pages)", "page_events"),
        ]
    if sequences:
        columns += [
            ("v_path", "sequence_paths"),
            ("v_name", "sequence_names"),
            (
                f"concat('\\x1e', arrayStringConcat(arrayMap((p, n) -> {_ENTRY}, v_path, v_name), '\\x1e'), '\\x1e')",
                "sequence",
            ),
        ]
    return columns
