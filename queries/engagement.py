"""Engagement per page: what ``time_on_page`` and ``scroll_depth`` are made of, the
one definition read by the raw path, the recent hours of the aggregates path and the
daily roll-up.

The tracker sends an ``engagement`` event when a page view ends, with
``props.engaged_ms`` (visible milliseconds) and, from Plausible's tracker,
``props.scroll_depth`` (0-100, capped by the collector). Plausible counts per session
and page: the time is summed, the scroll depth is each session's deepest. beacon does
the same per visitor-day and page (a visitor hash lives one local day): engagement
events are no part of the visits (``queries.sessions``), and a visitor-day adds up
across days, so whole days roll up into plain sums (docs/analytics.md says where
this differs from a visit).

Per page, over the visitor-days that sent engagement on it:

    engaged_ms        the engaged milliseconds, summed
    engaged_visitors  the visitor-days with an engaged time
    scroll_sum        the deepest scroll of each visitor-day, summed
    scroll_visitors   the visitor-days with a scroll depth
"""

from __future__ import annotations

from queries.sessions import VISITOR_KEY

ENGAGEMENT = "type = 'event' AND name = 'engagement'"
SUMS = ("engaged_ms", "engaged_visitors", "scroll_sum", "scroll_visitors")
# Over the rows of ``per_visitor_page``.
TOTALS = {
    "engaged_ms": "sum(ms)",
    "engaged_visitors": "countIf(timed)",
    "scroll_sum": "sum(depth)",
    "scroll_visitors": "countIf(scrolled)",
}
MAX_SCROLL = 100  # the collector caps it already; a row written otherwise is capped here too


def per_visitor_page(events_where: str, zone: str, bucket: str = "''") -> str:
    """A row per site, visitor, local day (``zone``: the zone as SQL), page (and
    ``bucket``, an expression of ``ts``) of the engagement events matching
    ``events_where``: its first time (``first``), its engaged ms and deepest scroll,
    and whether it had each."""
    has_ms, has_depth = "mapContains(props, 'engaged_ms')", "mapContains(props, 'scroll_depth')"
    return f"""
SELECT site, {VISITOR_KEY} AS visitor, path, toDate(ts, {zone}) AS day, min(ts) AS first,
       sumIf(toUInt64OrZero(props['engaged_ms']), {has_ms}) AS ms, countIf({has_ms}) > 0 AS timed,
       maxIf(least(toUInt64OrZero(props['scroll_depth']), {MAX_SCROLL}), {has_depth}) AS depth,
       countIf({has_depth}) > 0 AS scrolled
FROM beacon.events
WHERE ({events_where}) AND {ENGAGEMENT}
GROUP BY site, visitor, path, day, {bucket}"""
