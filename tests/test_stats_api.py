"""The Stats API over HTTP against a running ``beacon serve``: Plausible v1 shapes,
the numbers of known traffic, tokens and sites, bad parameters, and the OpenAPI
document checked against the live server by schemathesis."""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import document
from api.stats_params import PERIODS
from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli

SITE, OTHER = "stats.example", "other.example"
DAY = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)


COUNTRIES = {1: "DE", 2: "FR", 3: "FR", 4: "US", 9: "DE"}


def _event(
    visitor: int, minute: float, path: str, kind: str = "pageview", name: str = "", source: str = "", site: str = SITE
) -> dict:
    ts = DAY + timedelta(hours=9, minutes=minute)
    country = COUNTRIES[visitor]
    return {
        "event_id": f"00000000-0000-4000-8000-{visitor:06d}{int(minute * 60):06d}",
        "site": site,
        "type": kind,
        "name": name,
        "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "hostname": site,
        "path": path,
        "url": f"https://{site}{path}",
        "referrer_source": source,
        "country_code": country,
        "browser": "Chrome",
        "os": "Linux",
        "device_class": "desktop",
        "visitor_id": visitor,
    }


# Known traffic on one day: visitor 1 has two visits (a 31-minute gap), visitor 2 one
# visit of three pages (the 29-minute gap keeps it one), visitor 3 a bounce, visitor 4
# one page and a custom event (not a bounce), and a visitor of another site.
TRAFFIC = [
    _event(1, 0, "/", source="Google"),
    _event(1, 5, "/pricing"),
    _event(1, 36, "/", source="Twitter"),
    _event(2, 0, "/docs"),
    _event(2, 29, "/docs/a"),
    _event(2, 58, "/pricing"),
    _event(3, 10, "/", source="Google"),
    _event(4, 20, "/pricing"),
    _event(4, 21, "/pricing", kind="event", name="Signup"),
    _event(9, 0, "/", site=OTHER),
]


def expected_visits() -> list[dict]:
    """The visits of TRAFFIC, worked out here: (visitor, start) → its events."""
    visits: list[list[dict]] = []
    last: dict[tuple, datetime] = {}
    for event in sorted((e for e in TRAFFIC if e["site"] == SITE), key=lambda e: (e["visitor_id"], e["ts"])):
        ts = datetime.fromisoformat(event["ts"])
        key = (event["site"], event["visitor_id"])
        if key not in last or ts - last[key] > timedelta(minutes=30):
            visits.append([])
        visits[-1].append(event)
        last[key] = ts
    return [
        {
            "pageviews": sum(e["type"] == "pageview" for e in v),
            "events": len(v),
            "bounce": sum(e["type"] == "pageview" for e in v) == 1 and all(e["type"] == "pageview" for e in v),
            "duration": (datetime.fromisoformat(v[-1]["ts"]) - datetime.fromisoformat(v[0]["ts"])).total_seconds(),
            "entry": v[0]["path"],
            "source": v[0]["referrer_source"] or "Direct / None",
        }
        for v in visits
    ]


def _insert(data_dir, rows: list[dict]) -> None:
    """Straight into the running server's store, through its control socket (the CLI's
    seam): one INSERT, as a batch would arrive."""
    store = RemoteStore(socket_path(data_dir))
    try:
        store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + "\n".join(json.dumps(r) for r in rows))
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("stats") / "data"
    with BeaconServer(data, "--visit-build-interval", "0.5") as running:
        for site in (SITE, OTHER):
            cli("sites", "add", site, "--data-dir", str(data))
        cli("goals", "add", SITE, "--event", "Signup", "--data-dir", str(data))
        _insert(data, TRAFFIC)
        running.analyst = cli(
            "tokens", "create", "--role", "analyst", "--site", SITE, "--data-dir", str(data)
        ).stdout.strip()
        running.everything = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        _wait_for_visits(running, len(expected_visits()))
        yield running


def _get(server, path: str, token: str | None = None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.analyst}"} if token != "" else {}
    return httpx.get(f"{server.url}/api/v1/stats/{path}", params=params, headers=headers, timeout=30)


def _wait_for_visits(server, count: int, timeout: float = 60) -> None:
    """The visits of past events are built in the background; poll until all are."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = _get(server, "aggregate", site_id=SITE, period="day", date=DAY.date().isoformat(), metrics="visits")
        if r.status_code == 200 and r.json()["results"]["visits"]["value"] == count:
            return
        time.sleep(0.2)
    raise AssertionError(f"visits not built in {timeout}s: {r.status_code} {r.text}")


def test_aggregate_numbers_are_those_of_the_traffic(server):
    visits = expected_visits()
    r = _get(
        server,
        "aggregate",
        site_id=SITE,
        period="day",
        date=DAY.date().isoformat(),
        metrics="visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events",
    )
    assert r.status_code == 200, r.text
    got = {m: v["value"] for m, v in r.json()["results"].items()}
    site_events = [e for e in TRAFFIC if e["site"] == SITE]
    assert got == {
        "visitors": len({e["visitor_id"] for e in site_events}),
        "visits": len(visits),
        "pageviews": sum(e["type"] == "pageview" for e in site_events),
        "views_per_visit": round(sum(v["pageviews"] for v in visits) / len(visits), 2),
        "bounce_rate": round(100 * sum(v["bounce"] for v in visits) / len(visits)),
        "visit_duration": round(sum(v["duration"] for v in visits) / len(visits)),
        "events": len(site_events),
    }


def test_breakdowns_and_timeseries_follow_plausible_shapes(server):
    date = DAY.date().isoformat()
    pages = _get(server, "breakdown", site_id=SITE, period="day", date=date, property="event:page", metrics="pageviews")
    counted = Counter(e["path"] for e in TRAFFIC if e["site"] == SITE and e["type"] == "pageview")
    assert pages.json()["results"] == [
        {"page": p, "pageviews": n} for p, n in sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    ]
    sources = _get(
        server, "breakdown", site_id=SITE, period="day", date=date, property="visit:source", metrics="visits"
    )
    by_source = Counter(v["source"] for v in expected_visits())
    assert {row["source"]: row["visits"] for row in sources.json()["results"]} == dict(by_source)
    series = _get(server, "timeseries", site_id=SITE, period="day", date=date, metrics="pageviews").json()["results"]
    assert len(series) == 24 and series[0]["date"] == f"{date} 00:00:00"
    hourly = Counter(e["ts"][11:13] for e in TRAFFIC if e["site"] == SITE and e["type"] == "pageview")
    assert {row["date"][11:13]: row["pageviews"] for row in series if row["pageviews"]} == dict(hourly)


def test_a_filter_narrows_every_number(server):
    r = _get(
        server,
        "aggregate",
        site_id=SITE,
        period="day",
        date=DAY.date().isoformat(),
        metrics="visitors,pageviews",
        filters="visit:country==FR",
    )
    french = [e for e in TRAFFIC if e["site"] == SITE and e["country_code"] == "FR"]
    assert r.json()["results"] == {
        "visitors": {"value": len({e["visitor_id"] for e in french})},
        "pageviews": {"value": sum(e["type"] == "pageview" for e in french)},
    }


def test_goals_convert(server):
    r = _get(
        server,
        "breakdown",
        site_id=SITE,
        period="day",
        date=DAY.date().isoformat(),
        property="event:goal",
        metrics="visitors,conversion_rate",
    )
    assert r.json()["results"] == [{"goal": "Signup", "visitors": 1, "conversion_rate": 25.0}]


def test_tokens_see_only_their_site(server):
    assert _get(server, "aggregate", token="", site_id=SITE).status_code == 401
    assert _get(server, "aggregate", token="bk_not-a-token", site_id=SITE).status_code == 401
    assert _get(server, "aggregate", site_id=OTHER).status_code == 403
    assert _get(server, "aggregate", token=server.everything, site_id=OTHER).status_code == 200
    assert _get(server, "aggregate", token=server.everything, site_id="nowhere.example").status_code == 404
    privacy = httpx.post(
        f"{server.url}/api/v1/privacy/export",
        json={"device_id": "x"},
        headers={"Authorization": f"Bearer {server.analyst}"},
    )
    assert privacy.status_code == 403  # an analyst never sees event-level rows


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"period": "fortnight"}, "period"),
        ({"period": "custom", "date": "2026-01-05"}, "date"),
        ({"date": "yesterday"}, "date"),
        ({"metrics": "visitors,revenue"}, "metrics"),
        ({"metrics": "visitors,visitors"}, "metrics"),
        ({"filters": "event:nothing==1"}, "filters"),
        ({"filters": "event:page"}, "filters"),
        # Each of these was a 500 (OverflowError, or a database error) before it was a 400:
        ({"period": "day", "date": "9999-12-31", "compare": "previous_period"}, "date"),
        ({"period": "7d", "date": "0001-01-01"}, "date"),
        ({"period": "custom", "date": "9999-12-01,9999-12-31"}, "date"),
        ({"period": "custom", "date": "0001-01-01,0001-01-05", "compare": "previous_period"}, "date"),
        ({"period": "month", "date": "0001-01-20", "compare": "previous_period"}, "date"),
        ({"period": "12mo", "date": "9999-12-31"}, "date"),
        ({"filters": "event:page~" + "|".join(f"/p{i}" for i in range(256))}, "filters"),
    ],
)
@pytest.mark.parametrize("endpoint", ["aggregate", "timeseries"])
def test_bad_parameters_get_400_naming_them(server, params, parameter, endpoint):
    r = _get(server, endpoint, site_id=SITE, **params)
    assert r.status_code == 400 and r.json()["parameter"] == parameter, r.text


@pytest.mark.parametrize(
    "params",
    [
        {"period": "day", "date": "9999-12-30", "compare": "previous_period"},
        {"period": "7d", "date": "0001-01-15", "compare": "previous_period"},
        {"period": "custom", "date": "9990-01-01,9999-12-30"},
        {"filters": "event:page~" + "|".join(f"/p{i}" for i in range(255))},
    ],
)
def test_the_last_days_and_values_that_fit_are_answered(server, params):
    r = _get(server, "aggregate", site_id=SITE, **params)
    assert r.status_code == 200, r.text


EDGE_DAYS = [
    "0001-01-01",
    "0001-01-31",
    "0001-02-28",
    "0001-12-31",
    "0002-01-01",
    "1970-01-01",
    "2106-02-07",
    "2299-12-31",
    "9998-12-31",
    "9999-01-01",
    "9999-11-30",
    "9999-12-01",
    "9999-12-29",
    "9999-12-30",
    "9999-12-31",
    "2024-02-29",
    "2023-02-29",
    "0000-01-01",
    "10000-01-01",
]
EDGE_DAYS_PLAIN = [day for day in EDGE_DAYS if len(day) == 10]


@st.composite
def _edge_request(draw) -> tuple[str, dict]:
    endpoint = draw(st.sampled_from(["aggregate", "timeseries", "breakdown"]))
    params = {"site_id": SITE, "period": draw(st.sampled_from(PERIODS))}
    days = sorted(draw(st.lists(st.sampled_from(EDGE_DAYS), min_size=1, max_size=2)))
    params["date"] = ",".join(days) if params["period"] == "custom" else days[0]
    if draw(st.booleans()):
        params["compare"] = "previous_period"
    if endpoint == "timeseries":
        params["interval"] = draw(st.sampled_from(["date", "day", "month"]))
    if endpoint == "breakdown":
        params["property"] = draw(st.sampled_from(["event:page", "visit:source", "event:props:plan"]))
    if draw(st.booleans()):
        count = draw(st.integers(1, 300))
        params["filters"] = f"event:page{draw(st.sampled_from(['==', '!=', '~']))}" + "|".join(
            f"/p{i}" for i in range(count)
        )
    return endpoint, params


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(request=_edge_request())
def test_calendar_edges_and_long_filters_get_an_answer_or_a_400_naming_the_parameter(server, request):
    """Found by a probe, then by this: OverflowErrors at the ends of the calendar and a
    database error for a ~ filter of 256 values were 500s."""
    endpoint, params = request
    r = _get(server, endpoint, **params)
    assert r.status_code in (200, 400), (params, r.status_code, r.text)
    if r.status_code == 400:
        assert r.json()["parameter"] in ("date", "filters", "interval", "period"), r.text


def test_bad_breakdown_parameters(server):
    assert _get(server, "breakdown", site_id=SITE).json()["parameter"] == "property"
    assert _get(server, "breakdown", site_id=SITE, property="event:page", limit="0").json()["parameter"] == "limit"
    assert _get(server, "breakdown", site_id=SITE, property="visit:nothing").status_code == 400
    assert _get(server, "timeseries", site_id=SITE, interval="week").json()["parameter"] == "interval"


def test_realtime_is_a_bare_number(server):
    r = _get(server, "realtime/visitors", site_id=SITE)
    assert r.status_code == 200 and r.json() == 0  # the traffic is days old


def test_the_openapi_document_is_served_without_a_token(server):
    r = httpx.get(f"{server.url}/api/v1/openapi.json")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(document()))
    assert set(r.json()["paths"]) >= {
        "/api/v1/stats/aggregate",
        "/api/v1/stats/timeseries",
        "/api/v1/stats/breakdown",
        "/api/v1/stats/realtime/visitors",
    }


SCHEMA = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@SCHEMA.include(path_regex="^/api/v1/stats/").parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_live_api_matches_its_openapi_document(server, case):
    """Generated requests (valid and not): never a 5xx, every answer as documented.
    Most keep the known site, so that they reach the queries and not only the 404."""
    if case.query and zlib.crc32(json.dumps(case.query, sort_keys=True, default=str).encode()) % 4:
        case.query["site_id"] = SITE
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {server.everything}"}, timeout=30)
    # Not "positive data acceptance": a schema cannot say every rule (a real date, a
    # known metric), and such a request gets its documented 400.
    case.validate_response(response, checks=CHECKS)


def test_a_site_in_its_own_zone_is_answered_in_its_local_days(server):
    """A Toronto site: a day's figures run from Toronto's midnight to the next, its hours
    are Toronto's, and the answer names the zone; after a move to another zone, the
    answer says from which day the figures are in it."""
    from zoneinfo import ZoneInfo

    site, zone = "toronto.example", ZoneInfo("America/Toronto")
    cli("sites", "add", site, "--timezone", "America/Toronto", "--data-dir", str(server.data_dir))
    # Today in Toronto: a past day's events, stored once the visit builder has passed
    # them, would miss their visits (docs/analytics.md), and a zone new to the store
    # rolls that day up without them; today's figures come from the events.
    day = datetime.now(zone).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)
    rows = []
    for visitor, at in enumerate(
        (
            midnight - timedelta(minutes=30),
            midnight + timedelta(minutes=30),
            midnight + timedelta(hours=23, minutes=30),
            midnight + timedelta(hours=24, minutes=30),
        ),
        start=101,
    ):
        row = _event(1, 0, "/", site=site) | {
            "visitor_id": visitor,
            "ts": at.strftime("%Y-%m-%d %H:%M:%S.000"),
            "event_id": f"00000000-0000-4000-8000-{visitor:012d}",
        }
        rows.append(row)
    _insert(server.data_dir, rows)
    date = day.isoformat()
    deadline = time.monotonic() + 10  # the API sees a new site within half a second
    while (
        aggregate := _get(
            server, "aggregate", server.everything, site_id=site, period="day", date=date, metrics="pageviews"
        )
    ).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aggregate.json() == {"results": {"pageviews": {"value": 2}}, "meta": {"timezone": "America/Toronto"}}
    series = _get(
        server, "timeseries", server.everything, site_id=site, period="day", date=date, metrics="pageviews"
    ).json()
    hours = {row["date"]: row["pageviews"] for row in series["results"]}
    assert len(hours) == 24 and sum(hours.values()) == 2
    assert hours[f"{date} 00:00:00"] == 1 and hours[f"{date} 23:00:00"] == 1

    moved = cli(
        "sites",
        "set",
        site,
        "--timezone",
        "Europe/Paris",
        "--raw-retention-days",
        "2",
        "--data-dir",
        str(server.data_dir),
    ).stdout
    first = moved.splitlines()[-1].split()[2]  # "figures from YYYY-MM-DD on are in Europe/Paris"
    deadline = time.monotonic() + 15  # the API reads the sites' zones again within 5 s
    while (
        answer := _get(server, "aggregate", server.everything, site_id=site, period="7d", metrics="pageviews")
    ).json()["meta"]["timezone"] != "Europe/Paris" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer.json()["meta"] == {"timezone": "Europe/Paris", "timezone_from": first}


# The same run with the calendar's edges put in: the document's date pattern (\d{4}-…)
# seldom draws a real day, never one at the end of the calendar.
EDGE_SCHEMA = schemathesis.openapi.from_dict(document())


@EDGE_SCHEMA.hook
def flatmap_query(context, query):
    if not query:
        return st.just(query)
    edges = st.fixed_dictionaries(
        {"site_id": st.just(SITE), "date": st.sampled_from(EDGE_DAYS_PLAIN)},
        optional={"compare": st.just("previous_period")},
    )
    return edges.map(lambda edge: query | edge)


@EDGE_SCHEMA.include(path_regex="^/api/v1/stats/(aggregate|timeseries|breakdown)$").parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_live_api_at_calendar_edges_matches_its_openapi_document(server, case):
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {server.everything}"}, timeout=30)
    case.validate_response(response, checks=CHECKS)


ENGAGED_BY = (
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", 140_000, 120),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", 60_000, 40),
)


def test_engagement_sent_to_the_collector_reads_as_time_on_page_and_scroll_depth(server):
    """Plausible's own example (query_time_on_page_test.exs): 140 s and 60 s on a page by
    two visitors is 100 s; scroll depths 120 (capped at 100) and 40 are 70 %."""
    page = "/engaged"
    for user_agent, engaged_ms, depth in ENGAGED_BY:
        body = {"n": "engagement", "u": f"https://{SITE}{page}", "d": SITE, "e": engaged_ms, "sd": depth}
        sent = httpx.post(f"{server.url}/api/event", json=body, headers={"User-Agent": user_agent}, timeout=30)
        assert sent.status_code == 202, sent.text
    today = {"site_id": SITE, "period": "day", "metrics": "time_on_page,scroll_depth"}
    deadline, rows = time.monotonic() + 60, []
    while time.monotonic() < deadline and rows != [{"page": page, "time_on_page": 100, "scroll_depth": 70}]:
        rows = _get(server, "breakdown", property="event:page", **today).json()["results"]
        time.sleep(0.2)
    assert rows == [{"page": page, "time_on_page": 100, "scroll_depth": 70}]
    aggregate = _get(server, "aggregate", filters=f"event:page=={page}", **today).json()["results"]
    assert aggregate == {"time_on_page": {"value": 100}, "scroll_depth": {"value": 70}}
    refused = _get(server, "aggregate", **today)
    assert refused.status_code == 400
    assert "can only be queried with event:page filters or dimensions" in refused.json()["error"]
    by_source = _get(server, "breakdown", property="visit:source", filters=f"event:page=={page}", **today)
    assert by_source.status_code == 400 and "a breakdown by event:page" in by_source.json()["error"]
