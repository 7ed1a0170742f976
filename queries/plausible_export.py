"""``beacon export plausible``: a site's own figures as Plausible's CSV archive.

Each file is one SELECT, as Plausible's export makes it (``lib/plausible/exports.ex``),
from beacon's visits and events cut per day of the site's time zone by the read
side's own definitions (``queries.sessions``, ``queries.engagement``): the archive,
imported again, gives the figures beacon reads natively. The columns are those of
``storage.imported.FILES``; ClickHouse writes the CSV (CSVWithNames), a month of days
at a time.

Where beacon's data differs from Plausible's (docs/plausible-archive.md): a city is a
name in beacon and a GeoNames id in Plausible, so ``city`` is 0 (unknown); a region
is its English name, not its ISO code; a device is written as Plausible names it
(``Desktop``); a page's counts include the visits with only custom events on it, as
beacon's page breakdown counts them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from queries.days import start_of, zone_sql
from queries.engagement import per_visitor_page
from queries.relations import cut_visits
from queries.sessions import COUNTED, VISIT_PROPERTIES, VISITOR_KEY
from queries.sql import Params
from storage.clickhouse import Store
from storage.imported import FILES, GOALS_WITH_PATH, GOALS_WITH_URL
from storage.plausible_archive import file_name

VISIT_COUNTS = (
    "uniqExact(visitor) AS visitors, count() AS visits, sum(duration) AS visit_duration, "
    "sum(is_bounce) AS bounces, sum(pageviews) AS pageviews"
)
DAY = timedelta(days=1)


class Span:
    """The days [first, last] of one site in its zone, and the SQL sources they read."""

    def __init__(self, site: str, zone: str, first: date, last: date):
        self.site, self.zone, self.first, self.last = site, zone, first, last
        self.params = Params()
        self.tz = zone_sql(zone)

    def visits(self, page_arrays: bool = False) -> str:
        lo, hi = start_of(self.first, self.zone), start_of(self.last + DAY, self.zone)
        return cut_visits(self.site, self.zone, lo, hi, self.params, VISIT_PROPERTIES, page_arrays=page_arrays)

    def events(self, counted: bool = True) -> str:
        """The condition of the span's events: those the read side counts, or all (engagement's too)."""
        lo, hi = start_of(self.first, self.zone), start_of(self.last + DAY, self.zone)
        p = self.params
        where = f"site = {p.text(self.site)} AND ts >= {p.time(lo)} AND ts < {p.time(hi)}"
        return f"{where} AND {COUNTED}" if counted else where

    def day(self, column: str) -> str:
        return f"toDate({column}, {self.tz})"


def _visitors(s: Span) -> str:
    return f"""
SELECT day AS date, e.visitors AS visitors, e.pageviews AS pageviews, v.bounces AS bounces, v.visits AS visits,
       v.visit_duration AS visit_duration
FROM (SELECT {s.day("ts")} AS day, uniqExact({VISITOR_KEY}) AS visitors, countIf(type = 'pageview') AS pageviews
      FROM beacon.events WHERE {s.events()} GROUP BY day) AS e
LEFT JOIN (SELECT {s.day("start")} AS day, count() AS visits, sum(is_bounce) AS bounces,
                  sum(duration) AS visit_duration
           FROM ({s.visits()}) GROUP BY day) AS v USING day
ORDER BY date"""


def _sources(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term,
       sum(pageviews) AS pageviews, uniqExact(visitor) AS visitors, count() AS visits,
       sum(duration) AS visit_duration, sum(is_bounce) AS bounces
FROM ({s.visits()})
GROUP BY date, source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term
ORDER BY date, source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term"""


def _pages(s: Span) -> str:
    engagement = per_visitor_page(s.events(counted=False), s.tz)
    return f"""
SELECT p.date AS date, h.hostname AS hostname, p.page AS page, p.visits AS visits, p.visitors AS visitors,
       p.pageviews AS pageviews, g.n_scroll AS total_scroll_depth, g.n_scrolled AS total_scroll_depth_visits,
       g.n_seconds AS total_time_on_page, g.n_timed AS total_time_on_page_visits
FROM (SELECT {s.day("start")} AS date, page, count() AS visits, uniqExact(visitor) AS visitors,
             sum(page_pv) AS pageviews
      FROM ({s.visits(page_arrays=True)}) ARRAY JOIN pages AS page, page_pageviews AS page_pv
      GROUP BY date, page) AS p
LEFT JOIN (SELECT {s.day("ts")} AS date, path AS page, any(hostname) AS hostname
           FROM beacon.events WHERE {s.events()} GROUP BY date, page) AS h USING (date, page)
LEFT JOIN (SELECT day AS date, path AS page, sumIf(depth, scrolled) AS n_scroll, countIf(scrolled) AS n_scrolled,
                  toUInt64(round(sum(ms) / 1000)) AS n_seconds, countIf(timed) AS n_timed
           FROM ({engagement}) GROUP BY date, page) AS g USING (date, page)
ORDER BY date, page"""


def _entry_pages(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, entry_page, uniqExact(visitor) AS visitors, count() AS entrances,
       sum(duration) AS visit_duration, sum(is_bounce) AS bounces, sum(pageviews) AS pageviews
FROM ({s.visits()}) WHERE entry_page != ''
GROUP BY date, entry_page ORDER BY date, entry_page"""


def _exit_pages(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, exit_page, uniqExact(visitor) AS visitors, sum(duration) AS visit_duration,
       count() AS exits, sum(is_bounce) AS bounces, sum(pageviews) AS pageviews
FROM ({s.visits()}) WHERE exit_page != ''
GROUP BY date, exit_page ORDER BY date, exit_page"""


def _custom_events(s: Span) -> str:
    p = s.params
    return f"""
SELECT {s.day("ts")} AS date, name, if(name IN {p.texts(GOALS_WITH_URL)}, props['url'], '') AS link_url,
       if(name IN {p.texts(GOALS_WITH_PATH)}, props['path'], '') AS path,
       uniqExact({VISITOR_KEY}) AS visitors, count() AS events
FROM beacon.events WHERE {s.events()} AND type = 'event'
GROUP BY date, name, link_url, path ORDER BY date, name, link_url, path"""


def _locations(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, country, region, toUInt64(0) AS city, {VISIT_COUNTS}
FROM ({s.visits()}) WHERE country NOT IN ('', 'ZZ')
GROUP BY date, country, region ORDER BY date, country, region"""


def _devices(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, if(device = '', '', concat(upper(substring(device, 1, 1)), substring(device, 2)))
       AS device_name, {VISIT_COUNTS}
FROM ({s.visits()}) GROUP BY date, device_name ORDER BY date, device_name"""


def _browsers(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, browser, browser_version, {VISIT_COUNTS}
FROM ({s.visits()}) GROUP BY date, browser, browser_version ORDER BY date, browser, browser_version"""


def _operating_systems(s: Span) -> str:
    return f"""
SELECT {s.day("start")} AS date, os AS operating_system, os_version AS operating_system_version, {VISIT_COUNTS}
FROM ({s.visits()}) GROUP BY date, operating_system, operating_system_version
ORDER BY date, operating_system, operating_system_version"""


QUERIES: dict[str, Callable[[Span], str]] = {
    "imported_visitors": _visitors,
    "imported_sources": _sources,
    "imported_pages": _pages,
    "imported_entry_pages": _entry_pages,
    "imported_exit_pages": _exit_pages,
    "imported_custom_events": _custom_events,
    "imported_locations": _locations,
    "imported_devices": _devices,
    "imported_browsers": _browsers,
    "imported_operating_systems": _operating_systems,
}


def export_csv(store: Store, site: str, zone: str, first: date, last: date) -> dict[str, bytes]:
    """Each table's CSV (header, then its rows) for the days [first, last] of ``site``."""
    out: dict[str, bytes] = {}
    for table, make in QUERIES.items():
        header = ",".join(f'"{name}"' for name in FILES[table].names).encode() + b"\n"
        chunks = [header]
        for lo, hi in _months(first, last):
            span = Span(site, zone, lo, hi)
            sql = make(span)
            chunks.append(store.raw_query(sql, "CSV", span.params.values))
        out[table] = b"".join(chunks)
    return out


def export_span(store: Store, site: str, zone: str, first: date | None, last: date | None) -> tuple[date, date]:
    """The days an export covers: those given, else the first and last of the site's own
    events. ValueError when a day is missing and the site has no events of its own, or
    when the last day comes before the first."""
    known = site_days(store, site, zone) if first is None or last is None else None
    if (first is None or last is None) and known is None:
        raise ValueError(f"{site} has no events of its own: name the first and last day")
    lo = first if first is not None else known[0]
    hi = last if last is not None else known[1]
    if hi < lo:
        raise ValueError(f"the last day ({hi}) is before the first ({lo})")
    return lo, hi


def archive_files(store: Store, site: str, zone: str, first: date, last: date) -> dict[str, bytes]:
    """The archive's files under Plausible's names (``imported_visitors_20240101_20241231.csv``…)."""
    return {file_name(table, first, last): data for table, data in export_csv(store, site, zone, first, last).items()}


def _months(first: date, last: date) -> list[tuple[date, date]]:
    """[first, last] cut at the first of each month: each SELECT reads a month at most."""
    spans, at = [], first
    while at <= last:
        month_end = (at.replace(day=28) + timedelta(days=4)).replace(day=1) - DAY
        spans.append((at, min(month_end, last)))
        at = month_end + DAY
    return spans


def site_days(store: Store, site: str, zone: str) -> tuple[date, date] | None:
    """The first and last day of the site's own events, in its zone (None: it has none)."""
    ((count, first, last),) = store.rows(
        "SELECT count(), toString(toDate(min(ts), {z:String})), toString(toDate(max(ts), {z:String})) "
        "FROM beacon.events WHERE site = {s:String}",
        {"s": site, "z": zone},
    )
    return (date.fromisoformat(first), date.fromisoformat(last)) if count else None
