"""Daily roll-ups: once every visit of a site's local day is written, the day's
figures go to beacon.stats_daily (per property value) and beacon.stats_pairs (per
value under one value of another property), and the day to beacon.stats_days.

Each day's rows include its pages' engagement sums (``queries.engagement``); the
day is listed with ``engagement`` 1, so that a day rolled up before they were is
read from the raw events for them.

Days are the sites' own (``rollups.zones``): a day is rolled up per zone, once the
builder's watermark has passed its local end. A day without events is listed
without running the statements. Rows of a day not listed (a roll-up that died
half-way) are deleted before the day is rolled up again.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from queries.days import day_start, local_date, start_of, zone_sql
from queries.engagement import TOTALS, per_visitor_page
from queries.parts import ENGAGEMENT_DIM
from queries.properties import CATALOGUE
from queries.sessions import COUNTED, VISITOR_KEY
from queries.sql import epoch_ms
from rollups.zones import ZoneGroup, zone_groups
from storage.clickhouse import Store

DAY = timedelta(days=1)


def roll_up_closed_days(store: Store, mark: datetime | None) -> list[date]:
    """Roll up every local day, of every zone, whose visits are all written (its end is
    at or before ``mark``, the builder's watermark) and that is not rolled up yet."""
    if mark is None:
        return []
    return [day for group in zone_groups(store) for day in _roll_up_group(store, group, mark)]


def rolled_days(store: Store, group: ZoneGroup) -> int:
    """How many days of the group's zone are rolled up."""
    ((count,),) = store.rows(
        "SELECT count() FROM beacon.stats_days FINAL WHERE zone IN {zones:Array(String)}",
        {"zones": list(group.stored_zones)},
    )
    return count


def _roll_up_group(store: Store, group: ZoneGroup, mark: datetime) -> list[date]:
    ((last_rolled,),) = store.rows(
        "SELECT toString(max(day)) FROM beacon.stats_days FINAL WHERE zone IN {zones:Array(String)}",
        {"zones": list(group.stored_zones)},
    )
    if last_rolled > "1970-01-01":
        day = date.fromisoformat(last_rolled) + DAY
    else:  # the group's first roll-up: from the first day with events (a scan of ts, once)
        ((first,),) = store.rows(
            f"SELECT toUnixTimestamp64Milli(min(ts)) FROM beacon.events WHERE {group.condition()}", group.params()
        )
        if not first:
            return []
        day = local_date(datetime.fromtimestamp(first / 1000, timezone.utc), group.zone)
    if start_of(day + DAY, group.zone) > mark:
        return []
    busy = _days_with_events(store, group, day, mark)
    done, idle = [], []
    while start_of(day + DAY, group.zone) <= mark:
        if day in busy:
            roll_up_day(store, day, group)
        else:
            idle.append(day)
        done.append(day)
        day += DAY
    list_days(store, idle, group)
    return done


def _days_with_events(store: Store, group: ZoneGroup, first: date, mark: datetime) -> set[date]:
    rows = store.rows(
        f"SELECT DISTINCT toString(toDate(ts, {zone_sql(group.zone)})) FROM beacon.events "
        f"WHERE {group.condition()} AND ts >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC') "
        "AND ts < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
        group.params(lo=epoch_ms(start_of(first, group.zone)), hi=epoch_ms(day_start(mark, group.zone))),
    )
    return {date.fromisoformat(d) for (d,) in rows}


_VISIT_DIMENSIONS = [("", "''", "''")] + [
    (p.name, p.column, CATALOGUE[p.parent].column if p.parent else "''")
    for p in CATALOGUE.values()
    if p.kind == "visit"
]
_DIMENSIONS = ", ".join(f"('{name}', {column}, {parent})" for name, column, parent in _VISIT_DIMENSIONS)
_TARGET = (
    "INSERT INTO beacon.stats_daily (site, dim, day, value, parent, visitors, pv_visitors, visits, bounces, "
    "duration, pageviews, events, entry_visits, entry_bounces)\n"
)

# One statement per kind of row; {d} is the day. Visit properties and the totals
# (dim ''), from the visits that started that day:
_BY_VISIT = (
    _TARGET
    + f"""SELECT site, d.1 AS dim, toDate(start, @ZONE@) AS day, d.2 AS value, d.3 AS parent,
    uniqExact(visitor), 0, count(), sum(is_bounce), sum(duration), sum(pageviews), sum(events), 0, 0
FROM beacon.visits ARRAY JOIN [{_DIMENSIONS}] AS d
WHERE toDate(start, @ZONE@) = {{d:Date}} AND @SITES@
GROUP BY site, dim, day, value, parent"""
)
# Pages, from the visits' page arrays: the visits that had the page and their
# duration, the visits entering on it and their bounces.
_BY_PAGE = (
    _TARGET
    + """SELECT site, 'event:page', toDate(start, @ZONE@) AS day, page, '',
    uniqExact(visitor), uniqExactIf(visitor, page_pv > 0), count(), 0, sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
WHERE toDate(start, @ZONE@) = {d:Date} AND @SITES@
GROUP BY site, day, page"""
)
# Event names and hostnames, from the events.
_BY_EVENT = (
    _TARGET
    + f"""SELECT site, d.1 AS dim, toDate(ts, @ZONE@) AS day, d.2 AS value, '',
    uniqExact({VISITOR_KEY}), 0, 0, 0, 0, countIf(type = 'pageview'), count(), 0, 0
FROM beacon.events
ARRAY JOIN [('event:name', if(type = 'pageview', 'pageview', name)), ('event:hostname', toString(hostname))] AS d
WHERE toDate(ts, @ZONE@) = {{d:Date}} AND @SITES@ AND {COUNTED}
GROUP BY site, dim, day, value"""
)
# Props: each key the site's events had that day, with "(none)" for the events without it
# (only site is in both sides of the join).
_BY_PROP = (
    _TARGET
    + f"""SELECT e.site, concat('event:props:', key) AS dim, toDate(ts, @ZONE@) AS day,
    if(mapContains(props, key), props[key], '(none)') AS value, '',
    uniqExact({VISITOR_KEY}), 0, 0, 0, 0, countIf(type = 'pageview'), count(), 0, 0
FROM beacon.events AS e
INNER JOIN (SELECT site, groupUniqArray(arrayJoin(mapKeys(props))) AS keys FROM beacon.events
            WHERE toDate(ts, @ZONE@) = {{d:Date}} AND @SITES@ AND {COUNTED} GROUP BY site) AS k ON e.site = k.site
ARRAY JOIN k.keys AS key
WHERE toDate(ts, @ZONE@) = {{d:Date}} AND @E_SITES@ AND {COUNTED}
GROUP BY e.site, dim, day, value"""
)

# Engagement per page (queries/engagement.py), from the engagement events.
_BY_ENGAGEMENT = f"""INSERT INTO beacon.stats_daily (site, dim, day, value, parent, {", ".join(TOTALS)})
SELECT site, '{ENGAGEMENT_DIM}', day, path, '', {", ".join(TOTALS.values())}
FROM ({per_visitor_page("toDate(ts, @ZONE@) = {d:Date} AND @SITES@", "@ZONE@")})
GROUP BY site, day, path"""


# Filtered breakdowns (beacon.stats_pairs): each pair of a filtered property (f) and a
# broken-down one (d), as a visit query computes it (queries/parts.py: visit_part).
_PAIR_TARGET = (
    "INSERT INTO beacon.stats_pairs (site, fdim, fvalue, dim, day, value, parent, visitors, visits, "
    "bounces, duration, pageviews, events, entry_visits, entry_bounces)\n"
)


# The visit properties rolled up in pairs (the page is paired too: the page arrays).
_PAIRED = ", ".join(f"('{p.name}', {p.column})" for p in CATALOGUE.values() if p.paired and p.kind == "visit")
# A visit property under a visit property's value.
_VISIT_UNDER_VISIT = (
    _PAIR_TARGET
    + f"""SELECT site, f.1 AS fdim, f.2 AS fvalue, d.1 AS dim, toDate(start, @ZONE@) AS day,
    d.2 AS value, '', uniqExact(visitor), count(), sum(is_bounce), sum(duration), sum(pageviews), sum(events), 0, 0
FROM beacon.visits ARRAY JOIN [{_PAIRED}] AS f ARRAY JOIN [{_PAIRED}] AS d
WHERE toDate(start, @ZONE@) = {{d:Date}} AND @SITES@ AND fdim != dim
GROUP BY site, fdim, fvalue, dim, day, value"""
)
# Pages under a visit property's value: the visits that had the page.
_PAGE_UNDER_VISIT = (
    _PAIR_TARGET
    + f"""SELECT site, f.1 AS fdim, f.2 AS fvalue, 'event:page', toDate(start, @ZONE@) AS day,
    page, '', uniqExact(visitor), count(), 0, sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN [{_PAIRED}] AS f
ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
WHERE toDate(start, @ZONE@) = {{d:Date}} AND @SITES@
GROUP BY site, fdim, fvalue, day, page"""
)
# A visit property under a page: the visits that had the page; their pageviews and
# events on it; the visits entering on it and their bounces.
_VISIT_UNDER_PAGE = (
    _PAIR_TARGET
    + f"""SELECT site, 'event:page', page, d.1 AS dim, toDate(start, @ZONE@) AS day,
    d.2 AS value, '', uniqExact(visitor), count(), sum(is_bounce), sum(duration), sum(page_pv), sum(page_ev),
    countIf(entry_page = page), sumIf(is_bounce, entry_page = page)
FROM beacon.visits ARRAY JOIN pages AS page, page_pageviews AS page_pv, page_events AS page_ev
ARRAY JOIN [{_PAIRED}] AS d
WHERE toDate(start, @ZONE@) = {{d:Date}} AND @SITES@
GROUP BY site, page, dim, day, value"""
)
# Goal mode: a custom event name's conversions (fdim 'event:name') by every visit
# property, each event joined to its own visit (the latest to start before it, as
# queries/parts.py's event_part joins them), and by the page the event happened on.
_VISIT_COLUMNS = ", ".join(sorted({column for _, column, _ in _VISIT_DIMENSIONS[1:]} | {"entry_page", "exit_page"}))
_NAME_DIMENSIONS = ", ".join(
    f"('{name}', {column}, {parent})" for name, column, parent in _VISIT_DIMENSIONS[1:] + [("event:page", "path", "''")]
)
_VISIT_UNDER_NAME = (
    _PAIR_TARGET
    + f"""SELECT site, 'event:name', name, d.1 AS dim, toDate(ts, @ZONE@) AS day,
    d.2 AS value, d.3, uniqExact(visitor), 0, 0, 0, 0, count(), 0, 0
FROM (SELECT site, name, path, ts, {VISITOR_KEY} AS visitor FROM beacon.events
      WHERE toDate(ts, @ZONE@) = {{d:Date}} AND @SITES@ AND type = 'event' AND {COUNTED}) AS e
ASOF JOIN (SELECT site AS v_site, visitor AS v_visitor, start AS v_start, {_VISIT_COLUMNS} FROM beacon.visits
           WHERE toDate(start, @ZONE@) = {{d:Date}} AND @SITES@) AS v
    ON e.site = v.v_site AND e.visitor = v.v_visitor AND e.ts >= v.v_start
ARRAY JOIN [{_NAME_DIMENSIONS}] AS d
GROUP BY site, name, dim, day, value, d.3"""
)
_ROLL_UPS = {
    "stats_daily": (_BY_VISIT, _BY_PAGE, _BY_EVENT, _BY_PROP, _BY_ENGAGEMENT),
    "stats_pairs": (_VISIT_UNDER_VISIT, _PAGE_UNDER_VISIT, _VISIT_UNDER_PAGE, _VISIT_UNDER_NAME),
}


def roll_up_day(store: Store, day: date, group: ZoneGroup) -> int:
    """Write a closed local day's rows of the group's sites to beacon.stats_daily and
    beacon.stats_pairs, then list the day; returns the rows written."""
    rows = 0
    params = group.params(d=day)
    for table, statements in _ROLL_UPS.items():
        of_day = f"day = {{d:Date}} AND {group.condition()}"
        ((left,),) = store.rows(f"SELECT count() FROM beacon.{table} WHERE {of_day}", params)
        if left:  # a roll-up of this day died before listing it
            store.command(f"DELETE FROM {store.mutable(table)} WHERE {of_day}", params)
        for statement in statements:
            store.command(_in_zone(statement, group), params)
        ((written,),) = store.rows(f"SELECT count() FROM beacon.{table} WHERE {of_day}", params)
        rows += written
    list_days(store, [day], group, rows)
    return rows


def _in_zone(statement: str, group: ZoneGroup) -> str:
    return (
        statement.replace("@ZONE@", zone_sql(group.zone))
        .replace("@SITES@", group.condition())
        .replace("@E_SITES@", group.condition("e.site"))
    )


def list_days(store: Store, days: list[date], group: ZoneGroup, rows: int = 0) -> None:
    """Record days as rolled up (idle days, with no rows, in one statement), with their
    goal-mode rows (``goals``: the days rolled up before those rows existed have none)."""
    if days:
        store.command(
            "INSERT INTO beacon.stats_days (day, zone, rows, engagement, goals) "
            "SELECT arrayJoin({d:Array(Date)}), {z:String}, {n:UInt64}, 1, 1",
            {"d": days, "z": group.zone, "n": rows},
        )
