"""Round trip of Plausible's CSV archive: generated traffic → export → import into a
site with no events of its own → every v1 and v2 aggregate, timeseries and breakdown
that the imported tables answer, read with imports included, equals the original
site's answer read natively (docs/plausible-archive.md).

The traffic keeps what the archive's format cannot carry out of the comparison: a
visitor's visits on a day share their source (a file groups visitors by source,
referrer and UTM tags at once, so one visitor under two referrers of one source would
count twice), and each visit starts with a pageview (imported "pageview" visitors are
the day's visitors)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import queries
from api import v2_query, v2_results
from api.stats import StatsAPI
from queries.model import Filter, StatsQuery
from queries.plausible_export import export_csv
from rollups.visit_builder import build_closed_visits
from storage.plausible_archive import file_name, read_archive, write_archive
from storage.plausible_import import Window, import_archive
from storage.sites import add_site, find_site
from tests.traffic import COUNTRIES, SOFTWARE, SOURCES, clean, insert, person_visit

ORIGINAL, COPY, ZONE = "orig.test", "copy.test", "America/Toronto"
DAY = timedelta(days=1)
TOTALS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events")
VISIT_METRICS = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")
PAGE_METRICS = ("visitors", "visits", "pageviews", "bounce_rate")
EVENT_METRICS = ("visitors", "events", "pageviews")
VISIT_PROPS = (
    "visit:source",
    "visit:referrer",
    "visit:utm_source",
    "visit:utm_medium",
    "visit:utm_campaign",
    "visit:entry_page",
    "visit:exit_page",
    "visit:country",
    "visit:region",
    "visit:device",
    "visit:browser",
    "visit:browser_version",
    "visit:os",
    "visit:os_version",
)
FILTERS = (
    (),
    (Filter("visit:source", "==", ("google",)),),
    (Filter("visit:source", "==", ("Direct / None",)),),
    (Filter("visit:country", "==", ("DE", "FR")),),
    (Filter("visit:device", "!=", ("desktop",)),),
    (Filter("visit:browser", "~", ("fox",)),),
)


def _traffic(rng: random.Random, first: datetime, days: int) -> list:
    events = []
    for day in range(days):
        for _ in range(40):
            country, region, city = rng.choice(COUNTRIES)
            browser, browser_version, os_, os_version, device = rng.choice(SOFTWARE)
            person = dict(country=country, region=region, city=city, browser=browser)
            person |= dict(browser_version=browser_version, os=os_, os_version=os_version, device=device)
            source, tagged = rng.choice(SOURCES), rng.random() < 0.3
            visitor_id = rng.getrandbits(63) | 1
            for _ in range(rng.choice((1, 1, 2, 3))):
                start = first + day * DAY + timedelta(seconds=rng.uniform(0, 23 * 3600))
                visit = person_visit(rng, ORIGINAL, visitor_id, start, person)
                visit[0].type, visit[0].name = "pageview", ""
                for e in visit:  # the visitor's source, whichever event opens a visit
                    e.source, e.referrer = source, f"https://{source}/" if source else ""
                    e.utm_source, e.utm_medium = ("newsletter", "email") if tagged else ("", "")
                    e.utm_campaign = "spring" if tagged else ""
                events += visit
    return events


@pytest.fixture(scope="module")
def trip(store):
    """The original site's traffic (six days, visits built), exported and imported into
    the copy; yields the days exported (first, last) and the first and last local day of the traffic."""
    clean(store)
    for table in ("site_imports", "imported_visitors"):
        store.command(f"TRUNCATE TABLE beacon.{table}")
    add_site(store, ORIGINAL, timezone_name=ZONE)  # before the visits are built: they are cut in its zone
    add_site(store, COPY, timezone_name=ZONE)
    rng = random.Random(30)
    first = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0) - 12 * DAY
    events = _traffic(rng, first, 6)
    insert(store, events)
    build_closed_visits(store, first + 8 * DAY)
    lo, hi = (first - DAY).date(), (first + 7 * DAY).date()  # a day either side: nothing there, nothing lost
    files = export_csv(store, ORIGINAL, ZONE, lo, hi)
    path = store_dir(store) / "orig.zip"
    write_archive(path, {file_name(t, lo, hi): data for t, data in files.items()})
    done = import_archive(store, COPY, read_archive(path, 1 << 30, 200), Window(lo, None))
    assert done.rows["imported_visitors"] >= 6 and done.rows["imported_sources"] > 20
    local_days = sorted({e.ts.astimezone(ZoneInfo(ZONE)).date() for e in events})
    yield lo, hi, local_days[0], local_days[-1]
    clean(store)


def store_dir(store):
    from pathlib import Path
    from urllib.parse import urlsplit

    return Path(urlsplit(store.dsn).path)


def _pair(lo, hi, _first, _last, metrics, filters=(), **more) -> tuple[StatsQuery, StatsQuery]:
    from queries.days import start_of

    own = StatsQuery(ORIGINAL, start_of(lo, ZONE), start_of(hi + DAY, ZONE), metrics, filters, timezone=ZONE, **more)
    return own, replace(own, site=COPY, imports=True)


@pytest.mark.parametrize("filters", FILTERS)
def test_aggregates_read_with_imports_equal_the_original(store, trip, filters):
    metrics = TOTALS if not filters else VISIT_METRICS
    own, copy = _pair(*trip, metrics, filters)
    expected = queries.aggregate(store, own)
    assert expected["visitors"] > 0
    assert queries.aggregate(store, copy) == expected


@pytest.mark.parametrize("interval", ["date", "week", "month"])
@pytest.mark.parametrize("filters", FILTERS[:4])
def test_timeseries_read_with_imports_equal_the_original(store, trip, interval, filters):
    metrics = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")
    own, copy = _pair(*trip, metrics, filters, interval=interval)
    expected = queries.timeseries(store, own)
    assert sum(row["visitors"] for row in expected) > 0
    assert queries.timeseries(store, copy) == expected


# For each property, a filter on a property of the same imported table (or none).
SAME_TABLE_FILTER = {
    "visit:source": Filter("visit:source", "!=", ("google",)),
    "visit:referrer": Filter("visit:source", "==", ("google", "twitter.com")),
    "visit:utm_source": Filter("visit:source", "==", ("Direct / None",)),
    "visit:utm_medium": Filter("visit:utm_campaign", "==", ("spring",)),
    "visit:utm_campaign": Filter("visit:referrer", "~", ("google",)),
    "visit:entry_page": Filter("visit:entry_page", "!=", ("/docs",)),
    "visit:exit_page": Filter("visit:exit_page", "~", ("blog",)),
    "visit:country": Filter("visit:country", "!=", ("US",)),
    "visit:region": Filter("visit:country", "==", ("DE", "FR")),
    "visit:device": Filter("visit:device", "!=", ("desktop",)),
    "visit:browser": Filter("visit:browser", "~", ("fox", "rom")),
    "visit:browser_version": Filter("visit:browser", "==", ("Chrome",)),
    "visit:os": Filter("visit:os", "!=", ("(not set)",)),
    "visit:os_version": Filter("visit:os", "==", ("iOS",)),
    "event:page": Filter("event:page", "!=", ("/docs",)),
    "event:name": Filter("event:name", "!=", ("Play",)),
}


@pytest.mark.parametrize("prop", VISIT_PROPS + ("event:page", "event:name"))
@pytest.mark.parametrize("filtered", [False, True])
def test_breakdowns_read_with_imports_equal_the_original(store, trip, prop, filtered):
    metrics = PAGE_METRICS if prop == "event:page" else EVENT_METRICS if prop == "event:name" else VISIT_METRICS
    filters = (SAME_TABLE_FILTER[prop],) if filtered else ()
    own, copy = _pair(*trip, metrics, filters, property=prop, limit=1000)
    expected = queries.breakdown(store, own)
    assert expected, prop
    assert queries.breakdown(store, copy) == expected


def test_properties_of_two_tables_are_answered_natively(store, trip):
    own, copy = _pair(*trip, VISIT_METRICS, (Filter("visit:source", "==", ("google",)),), property="visit:country")
    assert queries.breakdown(store, own) and queries.breakdown(store, copy) == []


def test_a_breakdown_pages_through_the_merged_rows(store, trip):
    own, copy = _pair(*trip, VISIT_METRICS, property="visit:entry_page", limit=2)
    for page in (1, 2, 3):
        assert queries.breakdown(store, replace(copy, page=page)) == queries.breakdown(store, replace(own, page=page))


def test_v1_answers_say_which_days_came_from_the_import(store, trip):
    lo, hi, first, last = trip
    api = StatsAPI(store)
    site = find_site(store, COPY)
    asked = {"site_id": COPY, "period": "custom", "date": f"{lo},{hi}", "metrics": "visitors,bounce_rate"}
    own = api._aggregate(find_site(store, ORIGINAL), asked | {"site_id": ORIGINAL})
    answer = api._aggregate(site, asked | {"with_imported": "true"})
    assert answer["results"] == own["results"]
    assert answer["meta"]["imports_included"] is True
    assert answer["meta"]["imported_days"] == {"from": str(first), "to": str(last)}
    hourly = api._timeseries(site, asked | {"with_imported": "true", "period": "day", "date": str(first)})
    assert hourly["meta"] == hourly["meta"] | {"imports_included": False, "imports_skip_reason": "unsupported_interval"}
    by_city = api._breakdown(site, asked | {"with_imported": "true", "property": "visit:city"})
    assert by_city["meta"]["imports_skip_reason"] == "unsupported_query" and by_city["results"] == []
    native = api._aggregate(site, asked)
    assert native["results"]["visitors"]["value"] == 0 and "imports_included" not in native["meta"]


V2_CASES = [
    ({"metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "views_per_visit"]}),
    ({"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"]}),
    ({"metrics": ["visitors", "visits", "bounce_rate"], "dimensions": ["visit:source"]}),
    ({"metrics": ["visitors", "visit_duration"], "dimensions": ["visit:browser", "visit:browser_version"]}),
    ({"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "order_by": [["pageviews", "desc"]]}),
    (
        {
            "metrics": ["visitors"],
            "dimensions": ["visit:country", "time:week"],
            "filters": [["is", "visit:country", ["DE", "US"]]],
        }
    ),
    ({"metrics": ["visitors", "percentage"], "dimensions": ["visit:device"], "pagination": {"limit": 2, "offset": 1}}),
]


@pytest.mark.parametrize("case", V2_CASES)
def test_v2_queries_with_imports_equal_the_original(store, trip, case):
    lo, hi, _, _ = trip
    now = datetime.now(timezone.utc)
    body = case | {"date_range": [str(lo), str(hi)]}

    def ask(site: str, include: dict) -> dict:
        parsed = v2_query.parse(body | {"site_id": site, "include": include}, site, ZONE, now, lambda: lo)
        return v2_results.answer(store, parsed)

    own, copy = ask(ORIGINAL, {}), ask(COPY, {"imports": True})
    assert own["results"] and copy["results"] == own["results"]
    assert copy["meta"]["imports_included"] is True


def test_v2_dimensions_no_one_table_holds_are_answered_natively(store, trip):
    lo, hi, _, _ = trip
    body = {"site_id": COPY, "metrics": ["visitors"], "date_range": [str(lo), str(hi)]}
    body |= {"dimensions": ["visit:source", "visit:country"], "include": {"imports": True}}
    answer = v2_results.answer(store, v2_query.parse(body, COPY, ZONE, datetime.now(timezone.utc), lambda: lo))
    assert answer["results"] == []
    assert answer["meta"]["imports_included"] is False and answer["meta"]["imports_skip_reason"] == "unsupported_query"
