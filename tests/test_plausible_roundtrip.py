"""Round trip of Plausible's CSV archive: generated traffic → export → import into a
site with no events of its own → every v1 and v2 aggregate, timeseries and breakdown
that the imported tables answer, read with imports included, equals the original
site's answer read natively (docs/plausible-archive.md).

The traffic keeps what the archive's format cannot carry out of the comparison: a
visitor's visits on a day share their source (a file groups visitors by source,
referrer and UTM tags at once, so one visitor under two referrers of one source would
count twice), each visit starts with a pageview (imported "pageview" visitors are
the day's visitors), and its other events happen on pages it viewed before, within the
site's day (an imported page's visitors are those with any event on it, a page goal's
those who viewed it)."""

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
from storage.goals import add_goal
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
# An event goal, a page goal, a wildcard goal on one page of the traffic and one on two.
GOALS = (
    ("event", "Signup"),
    ("event", "Play"),
    ("event", "404"),
    ("page", "/pricing"),
    ("page", "/doc*"),
    ("page", "/blog/*"),
)
# A goal whose imported visitors add up over several rows of a day (a test of its own below):
# the pages of a wildcard.
SUMMED = {"Visit /blog/*"}
LINKS = ("https://a.example/", "https://b.example/x")
GOAL_METRICS = ("visitors", "events", "conversion_rate")
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
                # 07:00 to 16:00 in Toronto: a visit (at most ~2 hours) ends on the day it started.
                start = first + day * DAY + timedelta(seconds=rng.uniform(0, 9 * 3600))
                visit = person_visit(rng, ORIGINAL, visitor_id, start, person)
                visit[0].type, visit[0].name = "pageview", ""
                viewed = []
                for e in visit:  # the visitor's source, whichever event opens a visit
                    e.source, e.referrer = source, f"https://{source}/" if source else ""
                    e.utm_source, e.utm_medium = ("newsletter", "email") if tagged else ("", "")
                    e.utm_campaign = "spring" if tagged else ""
                    viewed += [e.path] if e.type == "pageview" else []
                    e.path = e.path if e.type == "pageview" else rng.choice(viewed)
                    if e.name == "Download":  # Plausible's special goals, with the prop each keeps
                        _special(e)
                events += visit
    return events


def _special(e) -> None:
    """An outbound link click (its url, or none) or a 404 (its path), one of each per
    visitor: a file's row is a (name, url, path), so a visitor's clicks on two links in a
    day would count twice in the name's imported visitors (as in Plausible)."""
    link = (*LINKS, None)[e.visitor_id % 3]
    if e.visitor_id % 4 < 2:
        e.name, e.props = "Outbound Link: Click", {"url": link} if link else {}
    else:
        e.name, e.props = "404", {"path": f"/gone/{e.visitor_id % 5}"}


@pytest.fixture(scope="module")
def trip(store):
    """The original site's traffic (six days, visits built), exported and imported into
    the copy; yields the days exported (first, last) and the first and last local day of the traffic."""
    clean(store)
    for table in ("site_imports", "imported_visitors"):
        store.command(f"TRUNCATE TABLE beacon.{table}")
    add_site(store, ORIGINAL, timezone_name=ZONE)  # before the visits are built: they are cut in its zone
    add_site(store, COPY, timezone_name=ZONE)
    for site in (ORIGINAL, COPY):
        for kind, value in GOALS:
            add_goal(store, site, kind, value)
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


# --- goals -----------------------------------------------------------------------------------

# A goal filter naming one goal (Plausible reads it from one table: custom events, or pages).
GOAL_FILTERS = (
    Filter("event:goal", "==", ("Signup",)),
    Filter("event:goal", "==", ("Visit /pricing",)),
    Filter("event:goal", "==", ("Visit /doc*",)),
    Filter("event:goal", "~", ("Sign",)),
)


@pytest.mark.parametrize("goal", GOAL_FILTERS)
def test_goal_aggregates_and_timeseries_with_imports_equal_the_original(store, trip, goal):
    own, copy = _pair(*trip, GOAL_METRICS, (goal,))
    expected = queries.aggregate(store, own)
    assert expected["visitors"] > 0 and 0 < expected["conversion_rate"] < 100
    assert queries.aggregate(store, copy) == expected
    for interval in ("date", "week", "month"):
        own_series, copy_series = replace(own, interval=interval), replace(copy, interval=interval)
        assert queries.timeseries(store, copy_series) == queries.timeseries(store, own_series)


@pytest.mark.parametrize("filters", [(), (Filter("event:goal", "==", ("Signup", "Visit /pricing", "Visit /doc*")),)])
def test_goal_breakdowns_with_imports_equal_the_original(store, trip, filters):
    own, copy = _pair(*trip, GOAL_METRICS + ("pageviews",), filters, property="event:goal", limit=100)
    expected = [row for row in queries.breakdown(store, own) if row["goal"] not in SUMMED]
    assert len(expected) == (len(filters[0].values) if filters else len(GOALS) - len(SUMMED))
    assert [row for row in queries.breakdown(store, copy) if row["goal"] not in SUMMED] == expected


def _daily(store, trip, site: str, imports: bool, f: Filter) -> list[dict]:
    own, _ = _pair(*trip, ("visitors", "events"), (f,), interval="date")
    return queries.timeseries(store, replace(own, site=site, imports=imports))


@pytest.mark.parametrize(
    "goal, parts",
    [
        (
            Filter("event:goal", "==", ("Signup", "Play")),
            [Filter("event:goal", "==", (n,)) for n in ("Signup", "Play")],
        ),
        (
            Filter("event:goal", "==", ("Visit /blog/*",)),
            [Filter("event:page", "==", (p,)) for p in ("/blog/a", "/blog/b")],
        ),
    ],
)
def test_goals_over_several_rows_add_their_visitors(store, trip, goal, parts):
    """Imported rows are daily sums per event name and per page: a visitor who did two of
    the goals filtered on, or read two pages a wildcard goal matches, on one day counts
    under each (as in Plausible); the conversions themselves add up exactly."""
    native, copy = _daily(store, trip, ORIGINAL, False, goal), _daily(store, trip, COPY, True, goal)
    assert [row["events"] for row in copy] == [row["events"] for row in native]
    each = [_daily(store, trip, ORIGINAL, False, f) for f in parts]
    summed = [a["visitors"] + b["visitors"] for a, b in zip(*each, strict=True)]
    assert [row["visitors"] for row in copy] == summed
    assert sum(summed) > sum(row["visitors"] for row in native)  # someone did both on a day


def test_v1_goal_answers_say_which_days_came_from_the_import(store, trip):
    lo, hi, first, last = trip
    api = StatsAPI(store)
    asked = {"period": "custom", "date": f"{lo},{hi}", "metrics": "visitors,events,conversion_rate"}
    asked |= {"filters": "event:goal==Signup"}
    own = api._aggregate(find_site(store, ORIGINAL), asked | {"site_id": ORIGINAL})
    answer = api._aggregate(find_site(store, COPY), asked | {"site_id": COPY, "with_imported": "true"})
    assert answer["results"] == own["results"]
    assert answer["meta"]["imports_included"] is True
    assert answer["meta"]["imported_days"] == {"from": str(first), "to": str(last)}
    by_goal = asked | {"site_id": COPY, "with_imported": "true", "property": "event:goal", "filters": ""}
    assert api._breakdown(find_site(store, COPY), by_goal)["meta"]["imports_included"] is True
    mixed = asked | {"site_id": COPY, "with_imported": "true", "filters": "event:goal==Signup|Visit /pricing"}
    assert api._aggregate(find_site(store, COPY), mixed)["meta"]["imports_skip_reason"] == "unsupported_query"
    by_source = by_goal | {"property": "visit:source", "filters": "event:goal==Signup"}
    assert api._breakdown(find_site(store, COPY), by_source)["meta"]["imports_skip_reason"] == "unsupported_query"


V2_GOAL_CASES = [
    {"metrics": ["visitors", "events", "conversion_rate"], "filters": [["is", "event:goal", ["Signup"]]]},
    {"metrics": ["visitors", "events", "conversion_rate"], "filters": [["is", "event:goal", ["Visit /doc*"]]]},
    {
        "metrics": ["visitors", "conversion_rate"],
        "filters": [["is", "event:goal", ["Visit /pricing"]]],
        "dimensions": ["time:day"],
    },
    {
        "metrics": ["visitors", "events", "conversion_rate"],
        "dimensions": ["event:goal"],
        "filters": [["is", "event:goal", ["Signup", "Play", "Visit /pricing", "Visit /doc*"]]],
        "order_by": [["visitors", "desc"]],
    },
    {
        "metrics": ["visitors", "group_conversion_rate"],
        "dimensions": ["event:goal", "time:week"],
        "filters": [["is", "event:goal", ["Signup", "Visit /doc*"]]],
    },
    {"metrics": ["visitors", "events"], "filters": [["contains", "event:goal", ["Visit /pri"]]]},
    {
        "metrics": ["visitors", "events"],
        "dimensions": ["event:props:url"],
        "filters": [["is", "event:name", ["Outbound Link: Click"]]],
    },
]


@pytest.mark.parametrize("case", V2_GOAL_CASES)
def test_v2_goal_queries_with_imports_equal_the_original(store, trip, case):
    test_v2_queries_with_imports_equal_the_original(store, trip, case)


# --- special goals' props (url, path) ---------------------------------------------------------

PROPS_CASES = [
    ("event:props:url", (Filter("event:name", "==", ("Outbound Link: Click",)),)),
    ("event:props:path", (Filter("event:goal", "==", ("404",)),)),
    ("event:props:path", (Filter("event:goal", "==", ("404",)), Filter("event:props:path", "!=", ("/docs",)))),
]


@pytest.mark.parametrize("prop, filters", PROPS_CASES)
def test_special_goal_props_with_imports_equal_the_original(store, trip, prop, filters):
    own, copy = _pair(*trip, ("visitors", "events"), filters, property=prop, limit=100)
    expected = queries.breakdown(store, own)
    assert len(expected) >= 3, expected  # every link (or path), and "(none)" for clicks without one
    assert queries.breakdown(store, copy) == expected
    one = filters + (Filter(prop, "==", (expected[0][prop.split(":")[-1]],)),)
    own_one, copy_one = _pair(*trip, ("visitors", "events"), one, interval="date")
    assert queries.timeseries(store, copy_one) == queries.timeseries(store, own_one)


def test_special_goal_props_need_their_goal_and_no_conversion_rate(store, trip):
    lo, hi, first, last = trip
    api = StatsAPI(store)
    asked = {"site_id": COPY, "period": "custom", "date": f"{lo},{hi}", "with_imported": "true"}
    asked |= {"property": "event:props:url", "metrics": "visitors"}
    clicks = api._breakdown(find_site(store, COPY), asked | {"filters": "event:name==Outbound Link: Click"})
    assert clicks["meta"]["imports_included"] is True and clicks["results"]
    for other in ("event:name==Signup", "event:goal==404", ""):  # no goal that keeps a url
        answer = api._breakdown(find_site(store, COPY), asked | {"filters": other})
        assert answer["meta"]["imports_skip_reason"] == "unsupported_query"
    rated = asked | {
        "filters": "event:goal==404",
        "property": "event:props:path",
        "metrics": "visitors,conversion_rate",
    }
    assert api._breakdown(find_site(store, COPY), rated)["meta"]["imports_skip_reason"] == "unsupported_query"


def test_v2_revenue_of_goals_without_revenue_is_null_with_imports_too(store, trip):
    """Revenue is no imported sum: the question is answered natively, its revenue null
    with Plausible's warning, as without imports."""
    lo, hi, _, _ = trip
    body = {"site_id": COPY, "metrics": ["visitors", "total_revenue"], "date_range": [str(lo), str(hi)]}
    body |= {"filters": [["is", "event:goal", ["Signup"]]], "include": {"imports": True}}
    answer = v2_results.answer(store, v2_query.parse(body, COPY, ZONE, datetime.now(timezone.utc), lambda: lo))
    assert answer["results"] == [{"metrics": [0, None], "dimensions": []}]
    assert answer["meta"]["imports_skip_reason"] == "unsupported_query" and answer["meta"]["metric_warnings"]
