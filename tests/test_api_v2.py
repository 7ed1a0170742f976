"""Plausible's Stats API v2 (POST /api/v2/query) against a running server: generated
traffic, and every expected figure worked out here in plain Python from the events
(no project code), over metrics × dimensions (one and two) × filter forms × order_by
× pagination, on whole days (the aggregates path) and on a range cut to the second
(the raw events). Also the request errors, in Plausible's words, and auth."""

from __future__ import annotations

import json
import random
import re
import time
import zlib
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

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
from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli

SITE, OTHER = "v2.example", "v2-other.example"
DAY = (datetime.now(timezone.utc) - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = (DAY, DAY + timedelta(days=1))
PATHS = ("/", "/pricing", "/docs", "/docs/a", "/blog/x")
SOURCES = ("", "Google", "Twitter", "DuckDuckGo")
COUNTRIES = ("DE", "FR", "US")


def _traffic() -> list[dict]:
    """Visitors on two days, one or two visits a day (an hour or more apart), each of
    one to four events a few minutes apart, some a Signup."""
    rng, events = random.Random(30), []
    for visitor in range(1, 31):
        for day in DAYS:
            if rng.random() < 0.3:
                continue
            at = day + timedelta(hours=8, minutes=rng.randrange(0, 300))
            for _ in range(rng.choice((1, 1, 2))):
                source = rng.choice(SOURCES)
                for i in range(rng.randrange(1, 5)):
                    signup = i > 0 and rng.random() < 0.2
                    events.append(_event(len(events), visitor, at, rng.choice(PATHS), source if i == 0 else "", signup))
                    at += timedelta(minutes=rng.randrange(1, 12), seconds=rng.randrange(0, 60))
                at += timedelta(minutes=rng.randrange(60, 120))
    return events + [_event(len(events), 99, DAY + timedelta(hours=9), "/", "", False, site=OTHER)]


def _event(n: int, visitor: int, ts: datetime, path: str, source: str, signup: bool, site: str = SITE) -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "site": site,
        "type": "event" if signup else "pageview",
        "name": "Signup" if signup else "",
        "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "hostname": site,
        "path": path,
        "url": f"https://{site}{path}",
        "referrer_source": source,
        "country_code": COUNTRIES[visitor % 3],
        "browser": "Chrome",
        "os": "Linux",
        "device_class": "desktop",
        # The visitor hash's salt changes daily: a visitor is a new id each day.
        "visitor_id": visitor * 100 + (ts - DAY).days,
    }


TRAFFIC = _traffic()
ZONED, ZONE = "v2-berlin.example", "Europe/Berlin"


def _zoned_traffic() -> list[dict]:
    """The same events on a site in Berlin's time zone (its hours are an hour or two
    ahead of UTC; every visit still falls within one of its days)."""
    return [
        e | {"site": ZONED, "hostname": ZONED, "event_id": e["event_id"].replace("-8000-", "-9000-")}
        for e in TRAFFIC
        if e["site"] == SITE
    ]


SHOP = "v2-shop.example"
SHOP_PAGES = ("/", "/shop", "/cart")


def _shop_traffic() -> list[dict]:
    """A shop on the first day: pageviews, each followed by an engagement event (engaged
    time and scroll depth) on its page; some visitors buy (revenue in USD)."""
    rng, events = random.Random(31), []
    for visitor in range(1, 16):
        at = DAY + timedelta(hours=9, minutes=rng.randrange(0, 400))
        for path in rng.sample(SHOP_PAGES, rng.randrange(1, 4)):
            n = 20000 + len(events)
            events.append(_event(n, visitor, at, path, "", False, site=SHOP))
            engagement = {"engaged_ms": str(rng.randrange(500, 90000)), "scroll_depth": str(rng.randrange(0, 101))}
            at += timedelta(seconds=rng.randrange(5, 200))
            events.append(_event(n + 1, visitor, at, path, "", False, site=SHOP) | _named("engagement", engagement))
            at += timedelta(seconds=rng.randrange(5, 60))
        if rng.random() < 0.5:
            amount = f"{rng.randrange(100, 900000) / 100:.2f}"
            purchase = _event(20000 + len(events), visitor, at, "/cart", "", False, site=SHOP) | _named("Purchase", {})
            events.append(purchase | {"revenue_amount": amount, "revenue_currency": "USD"})
    return events


def _named(name: str, props: dict) -> dict:
    return {"type": "event", "name": name, "props": props}


SHOP_TRAFFIC = _shop_traffic()

# --- the oracle: plain Python over TRAFFIC ------------------------------------------------


def _visits() -> list[dict]:
    """Each visit (a visitor's events with gaps of at most 30 minutes) with its events."""
    visits, last = [], {}
    for e in sorted((e for e in TRAFFIC if e["site"] == SITE), key=lambda e: (e["visitor_id"], e["ts"])):
        ts = datetime.fromisoformat(e["ts"])
        if e["visitor_id"] not in last or ts - last[e["visitor_id"]] > timedelta(minutes=30):
            visits.append({"visitor": e["visitor_id"], "events": []})
        visits[-1]["events"].append(e)
        last[e["visitor_id"]] = ts
    for v in visits:
        first, events = v["events"][0], v["events"]
        v["visit:source"] = first["referrer_source"] or "Direct / None"
        v["visit:country"] = first["country_code"]
        v["visit:entry_page"] = first["path"]
        v["start"] = datetime.fromisoformat(first["ts"]).replace(tzinfo=timezone.utc)
        pageviews = sum(e["type"] == "pageview" for e in events)
        v["bounce"] = pageviews == 1 and len(events) == 1
        v["duration"] = (datetime.fromisoformat(events[-1]["ts"]) - datetime.fromisoformat(first["ts"])).total_seconds()
    return visits


VISITS = _visits()


def _value(e: dict, visit: dict, dimension: str) -> str:
    ts = datetime.fromisoformat(e["ts"]) if e is not None else visit["start"]
    if dimension == "time:day":
        return ts.date().isoformat()
    if dimension == "time:hour":
        return ts.strftime("%Y-%m-%d %H:00:00")
    if dimension == "time:week":  # its Monday, the range's first day for the first week
        return max(ts.date() - timedelta(days=ts.weekday()), DAY.date()).isoformat()
    if dimension == "time:month":
        return ts.strftime("%Y-%m-01")
    if dimension == "event:goal":
        return e["name"]
    if dimension == "event:page":
        return e["path"]
    if dimension == "event:name":
        return e["name"] if e["type"] == "event" else "pageview"
    return visit[dimension]


BEHAVIOURS = ("has_done", "has_not_done")


def _holds(f: list, e: dict | None, visit: dict) -> bool:
    op = f[0]
    if op in BEHAVIOURS:  # the event's visit had an event matching f[1] (or had none)
        return any(_holds(f[1], x, visit) for x in visit["events"]) == (op == "has_done")
    if op == "not":
        return not _holds(f[1], e, visit)
    if op in ("and", "or"):
        results = [_holds(x, e, visit) for x in f[1]]
        return all(results) if op == "and" else any(results)
    value, clauses = _value(e, visit, f[1]), f[2]
    if len(f) == 4 and not f[3]["case_sensitive"]:
        value, clauses = value.lower(), [c.lower() for c in clauses]
    found = {
        "is": value in clauses,
        "contains": any(c in value for c in clauses),
        "matches": any(re.search(c, value) for c in clauses),
    }
    return found[op] if op in found else not found[op.removesuffix("_not")]


def _plain(filters: list) -> list:
    """The filters but the behavioural ones (which name events of the visit, not the row's)."""
    return [f for f in filters if f[0] not in BEHAVIOURS]


def _half_up(x: Fraction, digits: int = 0) -> float:
    scaled = x * 10**digits
    return int(scaled + Fraction(1, 2)) / 10**digits


def expected(metrics: list[str], dimensions: list[str], filters: list, lo: datetime, hi: datetime) -> dict:
    """{dimension values: [metric values]} from the events, or from the visits for
    visit metrics (those asked here with visit dimensions only)."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"visitors": set(), "pageviews": 0, "events": 0, "visits": []})
    for visit in VISITS:
        if not lo <= visit["start"] < hi:
            continue
        for e in visit["events"]:
            if "event:goal" in dimensions and e["name"] != "Signup":
                continue  # a goal breakdown lists the events of its goals only
            if all(_holds(f, e, visit) for f in filters):
                g = groups[tuple(_value(e, visit, d) for d in dimensions)]
                g["visitors"].add(e["visitor_id"])
                g["pageviews"] += e["type"] == "pageview"
                g["events"] += 1
        on_visits = "event:" not in json.dumps(_plain(filters)) + json.dumps(dimensions)
        if on_visits and all(_holds(f, None, visit) for f in filters):
            groups[tuple(_value(None, visit, d) for d in dimensions)]["visits"].append(visit)
    out = {}
    for key, g in groups.items():
        visits = g["visits"]
        figures = {
            "visitors": len(g["visitors"]),
            "pageviews": g["pageviews"],
            "events": g["events"],
            "visits": len(visits),
            "bounce_rate": int(_half_up(Fraction(100 * sum(v["bounce"] for v in visits), len(visits))))
            if visits
            else None,
            "visit_duration": int(_half_up(Fraction(sum(int(v["duration"]) for v in visits), len(visits))))
            if visits
            else None,
        }
        out[key] = [figures[m] for m in metrics]
    return out


def ordered(rows: dict, metrics: list[str], dimensions: list[str], order_by: list | None) -> list[dict]:
    """The rows sorted as the API documents: order_by, then dimension values ascending."""
    if order_by is None:  # time first, then the first metric, largest first
        order_by = [[d, "asc"] for d in dimensions if d.startswith("time")] + [[metrics[0], "desc"]]
    names = metrics + dimensions
    items = sorted(rows.items(), key=lambda kv: list(kv[0]))
    for name, direction in reversed(order_by):
        at = names.index(name)

        def key(kv, at=at):
            value = (kv[1] + list(kv[0]))[at]
            return (value is not None, value if value is not None else 0)

        items.sort(key=key, reverse=direction == "desc")
    return [{"metrics": m, "dimensions": list(k)} for k, m in items]


# --- the server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("v2") / "data"
    with BeaconServer(data, "--visit-build-interval", "0.5") as running:
        for site in (SITE, OTHER):
            cli("sites", "add", site, "--data-dir", str(data))
        cli("sites", "add", ZONED, "--timezone", ZONE, "--data-dir", str(data))
        cli("goals", "add", SITE, "--event", "Signup", "--data-dir", str(data))
        cli("sites", "add", SHOP, "--data-dir", str(data))
        cli("goals", "add", SHOP, "--event", "Purchase", "--currency", "USD", "--data-dir", str(data))
        cli("goals", "add", SHOP, "--event", "Refund", "--currency", "EUR", "--data-dir", str(data))
        store = RemoteStore(socket_path(data))
        try:
            rows = "\n".join(json.dumps(r) for r in TRAFFIC + _zoned_traffic() + SHOP_TRAFFIC)
            store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + rows)
        finally:
            store.close()
        running.analyst = cli(
            "tokens", "create", "--role", "analyst", "--site", SITE, "--data-dir", str(data)
        ).stdout.strip()
        running.other = cli(
            "tokens", "create", "--role", "analyst", "--site", OTHER, "--data-dir", str(data)
        ).stdout.strip()
        running.everything = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        _wait_for_visits(running)
        yield running


WHOLE_DAYS = [DAY.date().isoformat(), DAYS[1].date().isoformat()]
# The same events, on a range cut to the second (nothing happens in the first minute):
# not whole hours, so the raw events answer it.
TO_THE_SECOND = [f"{WHOLE_DAYS[0]}T00:00:30+00:00", f"{WHOLE_DAYS[1]}T23:59:59+00:00"]
SPAN = (DAY, DAY + timedelta(days=2))


def _post(server, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.analyst}"}
    return httpx.post(f"{server.url}/api/v2/query", json=body, headers=headers, timeout=60)


def _wait_for_visits(server, timeout: float = 90) -> None:
    body = {"site_id": SITE, "metrics": ["visits"], "date_range": WHOLE_DAYS}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = _post(server, body)
        if r.status_code == 200 and r.json()["results"][0]["metrics"] == [len(VISITS)]:
            return
        time.sleep(0.2)
    raise AssertionError(f"visits not built in {timeout}s: {r.status_code} {r.text}")


# --- the cases --------------------------------------------------------------------------------

EVENT_METRICS = ["visitors", "pageviews", "events"]
VISIT_METRICS = ["visits", "visitors", "bounce_rate", "visit_duration"]
FILTERS = [
    [],
    [["is", "visit:source", ["Google", "Direct / None"]]],
    [["is_not", "visit:country", ["FR"]]],
    [["contains", "event:page", ["docs"]]],
    [["contains_not", "event:page", ["/docs"]]],
    [["matches", "event:page", ["^/(pricing|blog)"]]],
    [["matches_not", "visit:source", ["^T"]]],
    [["or", [["is", "visit:country", ["DE"]], ["is", "visit:country", ["US"]]]]],
    [["not", ["is", "visit:source", ["Google"]]]],
    [["and", [["contains", "event:page", ["/"]], ["is_not", "visit:source", ["Twitter"]]]]],
    [["is", "event:page", ["/", "/pricing"]], ["is", "visit:country", ["DE", "FR"]]],
    [["not", ["or", [["is", "visit:country", ["DE"]], ["contains", "event:page", ["docs"]]]]]],
    [["is", "visit:source", ["google", "TWITTER"], {"case_sensitive": False}]],
    [["contains_not", "event:page", ["DOC"], {"case_sensitive": False}]],
    [["or", [["is", "visit:country", ["DE"]], ["is", "visit:source", ["Google"]]]]],
    [["or", [["contains", "event:page", ["docs"]], ["is", "visit:source", ["Twitter"]]]]],
    [["not", ["and", [["is", "visit:country", ["DE"]], ["contains_not", "event:page", ["/docs"]]]]]],
    [
        ["or", [["is", "event:name", ["Signup"]], ["is", "event:page", ["/pricing"]]]],
        ["is_not", "visit:country", ["US"]],
    ],
    [["or", [["is_not", "visit:source", ["Google"]], ["matches", "visit:country", ["^F"]]]]],
    [["has_done", ["is", "event:name", ["Signup"]]]],
    [["has_not_done", ["is", "event:page", ["/pricing"]]], ["is_not", "visit:source", ["Twitter"]]],
    [["has_done", ["is", "event:goal", ["Signup"]]], ["has_done", ["contains", "event:page", ["docs"]]]],
    [["has_not_done", ["and", [["contains", "event:page", ["/doc"]], ["not", ["is", "event:page", ["/docs"]]]]]]],
]
VISIT_FILTERS = [f for f in FILTERS if "event:page" not in json.dumps(_plain(f))]
BEHAVIOUR_FILTERS = [f for f in FILTERS if f != _plain(f)]
ORDERS = [None, [["visitors", "asc"]], [["events", "desc"], ["event:page", "desc"]]]


def _cases() -> list[tuple]:
    cases = []
    event_dimensions = [[], ["event:page"], ["visit:source"], ["event:name"], ["time:day"], ["time:hour"]]
    event_dimensions += [["visit:source", "event:page"], ["time:day", "visit:country"], ["time:week"], ["time:month"]]
    event_dimensions += [["event:goal"], ["visit:entry_page"], ["event:goal", "visit:source"]]
    for i, dimensions in enumerate(event_dimensions):
        for j, filters in enumerate(FILTERS):
            if (i + j) % 2 == 0:  # half of the product, every row and column of it
                cases.append((EVENT_METRICS, dimensions, filters, None, None))
    visit_dimensions = [[], ["visit:source"], ["visit:country"], ["time:day"], ["visit:source", "visit:country"]]
    for dimensions in visit_dimensions + [["visit:entry_page"], ["time:week"]]:
        for filters in VISIT_FILTERS[::2]:
            cases.append((VISIT_METRICS, dimensions, filters, None, None))
    for dimensions in visit_dimensions + [["visit:entry_page"]]:  # or across visit dimensions: a visit's
        for filters in FILTERS:
            if filters and filters[0][0] == "or" and "event:" not in json.dumps(filters):
                cases.append((VISIT_METRICS, dimensions, filters, None, None))
    for dimensions in visit_dimensions[:4]:  # has_done: session metrics of the visits that did it
        for filters in BEHAVIOUR_FILTERS:
            cases.append((VISIT_METRICS, dimensions, filters, None, None))
    for order in ORDERS[1:]:
        cases.append((EVENT_METRICS, ["event:page"], [], order, None))
    for page in ({"limit": 2, "offset": 0}, {"limit": 3, "offset": 2}, {"limit": 5, "offset": 100}):
        cases.append((EVENT_METRICS, ["visit:source", "event:page"], [], [["visitors", "desc"]], page))
    return cases


def _case_id(case: tuple) -> str:
    metrics, dimensions, filters, order, page = case
    return f"{metrics[0]}|{','.join(dimensions) or '-'}|{json.dumps(filters)[:60]}|{order}|{page}"


@pytest.mark.parametrize("date_range", [WHOLE_DAYS, TO_THE_SECOND], ids=["whole-days", "to-the-second"])
@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_answers_equal_the_figures_worked_out_from_the_events(server, case, date_range):
    metrics, dimensions, filters, order, page = case
    body = {"site_id": SITE, "metrics": metrics, "date_range": date_range, "dimensions": dimensions}
    body |= {"filters": filters} if filters else {}
    body |= {"order_by": order} if order else {}
    body |= {"pagination": page, "include": {"total_rows": True}} if page else {}
    r = _post(server, body)
    assert r.status_code == 200, r.text
    rows = expected(metrics, dimensions, filters, *SPAN)
    if not dimensions and not rows:
        rows = {(): [0, 0, 0] if metrics == EVENT_METRICS else [0, 0, 0, None]}
    want = ordered(rows, metrics, dimensions, order)
    if page:
        assert r.json()["meta"]["total_rows"] == len(want)
        want = want[page["offset"] : page["offset"] + page["limit"]]
    if not dimensions and metrics == VISIT_METRICS and not VISITS:
        pytest.skip("no visits")
    got = r.json()["results"]
    if not dimensions:  # one row, rates of no visits as 0 (the aggregate's)
        want[0]["metrics"] = [0 if v is None else v for v in want[0]["metrics"]]
    assert got == want


def test_the_answer_echoes_the_query_and_says_what_it_includes(server):
    body = {
        "site_id": SITE,
        "metrics": ["visitors"],
        "date_range": WHOLE_DAYS,
        "dimensions": ["time:day"],
        "include": {"time_labels": True, "imports": True, "total_rows": True},
    }
    r = _post(server, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["query"]["date_range"] == [f"{WHOLE_DAYS[0]}T00:00:00+00:00", f"{WHOLE_DAYS[1]}T23:59:59+00:00"]
    assert answer["query"]["order_by"] == [["time:day", "asc"], ["visitors", "desc"]]
    assert answer["query"]["pagination"] == {"limit": 10000, "offset": 0}
    assert answer["meta"] == {
        "imports_included": False,
        "imports_skip_reason": "no_imported_data",
        "time_labels": WHOLE_DAYS,
        "total_rows": len({v["start"].date() for v in VISITS}),
    }


def test_weeks_and_months_are_labelled_from_the_ranges_first_day(server):
    """A week is labelled by its Monday, the first one by the range's first day."""
    r = _post(
        server, {"site_id": SITE, "metrics": ["pageviews"], "date_range": WHOLE_DAYS, "dimensions": ["time:week"]}
    )
    assert r.status_code == 200, r.text
    weeks = defaultdict(int)
    for e in TRAFFIC:
        if e["site"] == SITE:
            day = datetime.fromisoformat(e["ts"]).date()
            weeks[max(day - timedelta(days=day.weekday()), DAY.date()).isoformat()] += e["type"] == "pageview"
    assert r.json()["results"] == [{"metrics": [n], "dimensions": [w]} for w, n in sorted(weeks.items())]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"metrics": ["baa"]}, '#/metrics/0: Invalid metric "baa"'),
        ({"metrics": ["visitors", "visitors"]}, "#/metrics: Expected items to be unique but they were not."),
        ({"metrics": []}, "#/metrics: Expected a minimum of 1 items but got 0."),
        ({"date_range": "bad"}, '#/date_range: Invalid date range "bad"'),
        ({"date_range": ["2026-02-03", "2026-01-01"]}, "#/date_range: Invalid date range"),
        ({"dimensions": ["x"]}, '#/dimensions/0: Invalid dimension "x"'),
        ({"include": {"time_labels": True}}, "Invalid include.time_labels: requires a time dimension."),
        (
            {"order_by": [["pageviews", "desc"]]},
            'Invalid order_by entry \'["pageviews", "desc"]\'. Entry is not a queried metric or dimension.',
        ),
        (
            {"filters": [["is", "visit:country", ["Germany"]]]},
            "Invalid visit:country filter, visit:country needs to be a valid 2-letter country code.",
        ),
        (
            {"filters": [["not", ["is", "event:goal", ["Signup"]]]]},
            "Invalid filters. Dimension `event:goal` can only be filtered at the top level.",
        ),
        ({"filters": [["matches", "event:page", ["(?=x)"]]]}, "Invalid filters. The regular expression"),
        (
            {
                "filters": [
                    [
                        "or",
                        [
                            ["and", [["is", "event:page", ["/"]], ["is", "visit:source", ["x"]]]],
                            ["is", "visit:country", ["DE"]],
                        ],
                    ]
                ]
            },
            "Invalid filters. beacon answers an `or` of single filters",
        ),
        (
            {"metrics": ["visits"], "filters": [["or", [["is", "event:page", ["/"]], ["is", "visit:source", ["x"]]]]]},
            "session metrics (visits) cannot be queried with alternatives (or) that name an event dimension",
        ),
        (
            {"filters": [["not", ["has_done", ["is", "event:name", ["Signup"]]]]]},
            "Invalid filters. Behavioral filters (has_done, has_not_done) cannot be nested.",
        ),
        ({"filters": [["has_done", ["is", "visit:source", ["Google"]]]]}, "Invalid filters."),
        ({"filters": [["has_done", ["is", "event:goal", ["Nope"]]]]}, "the goal 'Nope' is not configured"),
        ({"pagination": {"limit": 0}}, "#/pagination/limit"),
        ({"bogus": 1}, '#: Unexpected property "bogus".'),
        (
            {"metrics": ["bounce_rate", "visits"], "dimensions": ["event:name"]},
            "Session metric(s) `bounce_rate, visits` cannot be queried along with event dimension(s) `event:name`",
        ),
        (
            {"metrics": ["views_per_visit"], "filters": [["is", "event:page", ["/"]]]},
            "Metric `views_per_visit` cannot be queried with a filter on `event:page`.",
        ),
        (
            {"metrics": ["conversion_rate"]},
            "Metric `conversion_rate` can only be queried with event:goal filters or dimensions.",
        ),
        ({"metrics": ["percentage"]}, "Metric `percentage` can only be queried with a dimension."),
        ({"dimensions": ["time", "time:day"]}, "Invalid dimensions: only one time dimension may be asked."),
        ({"date_range": ["2010-01-01", "2026-01-01"]}, "#/date_range: Invalid date range"),
    ],
)
def test_an_invalid_query_gets_plausibles_message_and_400(server, body, message):
    r = _post(server, {"site_id": SITE, "metrics": ["visitors"], "date_range": "7d"} | body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(message), r.json()


def test_tokens_and_sites_are_checked_as_in_v1(server):
    body = {"site_id": SITE, "metrics": ["visitors"], "date_range": "7d"}
    assert _post(server, body, token=server.other).status_code == 403
    assert _post(server, body, token="nope").status_code == 401
    assert _post(server, body | {"site_id": "unknown.example"}, token=server.analyst).status_code in (403, 404)
    r = httpx.post(
        f"{server.url}/api/v2/query", content=b"{not json", headers={"Authorization": f"Bearer {server.analyst}"}
    )
    assert r.status_code == 400


def test_case_insensitive_filters_and_a_goal_filter(server):
    body = {
        "site_id": SITE,
        "metrics": ["visitors", "events"],
        "date_range": WHOLE_DAYS,
        "filters": [["contains", "event:page", ["DOCS"], {"case_sensitive": False}]],
    }
    r = _post(server, body)
    assert r.status_code == 200, r.text
    want = expected(["visitors", "events"], [], [["contains", "event:page", ["docs"]]], *SPAN)[()]
    assert r.json()["results"] == [{"metrics": want, "dimensions": []}]
    signups = [e for e in TRAFFIC if e["name"] == "Signup"]
    converted = len({e["visitor_id"] for e in signups})
    everyone = len({e["visitor_id"] for e in TRAFFIC if e["site"] == SITE})
    r = _post(
        server,
        {
            "site_id": SITE,
            "metrics": ["visitors", "events", "conversion_rate"],
            "date_range": WHOLE_DAYS,
            "filters": [["is", "event:goal", ["Signup"]]],
        },
    )
    assert r.status_code == 200, r.text
    rate = _half_up(Fraction(100 * converted, everyone), 1)
    assert r.json()["results"] == [{"metrics": [converted, len(signups), rate], "dimensions": []}]


def test_rates_divide_by_the_whole_range_or_by_the_group_as_plausibles_do(server):
    """conversion_rate: a source's converted visitors over every visitor of the range;
    group_conversion_rate: over the source's visitors; percentage: the source's share of
    the visitors. To a tenth of a percent."""
    everyone, per_source, converted = set(), defaultdict(set), defaultdict(set)
    for visit in VISITS:
        for e in visit["events"]:
            everyone.add(e["visitor_id"])
            per_source[visit["visit:source"]].add(e["visitor_id"])
            if e["name"] == "Signup":
                converted[visit["visit:source"]].add(e["visitor_id"])
    body = {"site_id": SITE, "date_range": WHOLE_DAYS, "dimensions": ["visit:source"]}
    r = _post(server, body | {"metrics": ["visitors", "percentage"]})
    assert r.status_code == 200, r.text
    shares = {s: [len(v), _half_up(Fraction(100 * len(v), len(everyone)), 1)] for s, v in per_source.items()}
    assert {row["dimensions"][0]: row["metrics"] for row in r.json()["results"]} == shares
    goal = [["is", "event:goal", ["Signup"]]]
    r = _post(server, body | {"metrics": ["visitors", "conversion_rate", "group_conversion_rate"], "filters": goal})
    assert r.status_code == 200, r.text
    rates = {
        s: [
            len(v),
            _half_up(Fraction(100 * len(v), len(everyone)), 1),
            _half_up(Fraction(100 * len(v), len(per_source[s])), 1),
        ]
        for s, v in converted.items()
    }
    assert {row["dimensions"][0]: row["metrics"] for row in r.json()["results"]} == rates


# --- the OpenAPI document, checked against the live route -----------------------------------

SCHEMA = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@SCHEMA.include(path_regex="^/api/v2/").parametrize()
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_v2_route_matches_its_openapi_document(server, case):
    """Generated bodies (valid and not): never a 5xx, every answer as documented. Most
    name the known site, so that they reach the parser and the queries, not the 404."""
    if isinstance(case.body, dict) and zlib.crc32(json.dumps(case.body, sort_keys=True, default=str).encode()) % 4:
        case.body["site_id"] = SITE
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {server.analyst}"}, timeout=60)
    case.validate_response(response, checks=CHECKS)


@given(
    st.recursive(
        st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    ),
    st.sampled_from(["filters", "dimensions", "order_by", "date_range", "metrics", "include", "pagination"]),
)
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_json_in_any_field_gets_an_answer_never_a_500(server, value, field):
    body = {"site_id": SITE, "metrics": ["visitors"], "date_range": WHOLE_DAYS, field: value}
    r = _post(server, body)
    assert r.status_code in (200, 400), r.text


def test_the_two_ranges_of_the_oracle_take_the_two_paths():
    """Whole days may be read from the aggregates; a range cut to the second only from
    the raw events: the oracle's two ranges cover both paths of the shared planner."""
    from queries import StatsQuery, plan

    def asked(lo: datetime, hi: datetime) -> StatsQuery:
        return StatsQuery(SITE, lo, hi, ("visitors", "events"), property="visit:source")

    cut = [datetime.fromisoformat(t) for t in TO_THE_SECOND]
    assert plan(asked(*SPAN)) == "aggregates"
    assert plan(asked(cut[0], cut[1] + timedelta(seconds=1))) == "events"


def test_the_documented_example_is_answered(server):
    """docs/api-v2.md's curl example, on this test's site."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api-v2.md").read_text()
    body = json.loads(re.search(r"-d '(\{.*?\})'", text, re.S).group(1)) | {"site_id": SITE}
    r = _post(server, body | {"date_range": WHOLE_DAYS})
    assert r.status_code == 200, r.text
    want = expected(["visitors", "pageviews"], body["dimensions"], body["filters"], *SPAN)
    got = {tuple(row["dimensions"]): row["metrics"][:2] for row in r.json()["results"]}
    assert got == {k: want[k] for k in got}
    assert len(got) == min(len(want), body["pagination"]["limit"])


def test_a_site_in_another_zone_is_answered_in_its_days_and_hours(server):
    """Dates are the site's local days, hours its wall clock, a datetime without an
    offset its wall clock too; the echoed range carries the site's offset."""
    berlin = ZoneInfo(ZONE)
    local = [datetime.fromisoformat(e["ts"]).replace(tzinfo=timezone.utc).astimezone(berlin) for e in TRAFFIC]
    pageviews = [(t, e) for t, e in zip(local, TRAFFIC, strict=True) if e["site"] == SITE and e["type"] == "pageview"]
    body = {"site_id": ZONED, "metrics": ["pageviews"], "dimensions": ["time:hour"]}
    r = _post(server, body | {"date_range": WHOLE_DAYS}, token=server.everything)
    assert r.status_code == 200, r.text
    hours = defaultdict(int)
    for t, _ in pageviews:
        hours[t.strftime("%Y-%m-%d %H:00:00")] += 1
    assert r.json()["results"] == [{"metrics": [n], "dimensions": [h]} for h, n in sorted(hours.items())]
    offset = DAY.astimezone(berlin).strftime("%z")
    assert r.json()["query"]["date_range"][0] == f"{WHOLE_DAYS[0]}T00:00:00{offset[:3]}:{offset[3:]}"
    # 10:00 to 13:59:59 on the first day, Berlin's wall clock: the raw events answer it.
    lo, hi = f"{WHOLE_DAYS[0]}T10:00:00", f"{WHOLE_DAYS[0]}T13:59:59"
    r = _post(server, body | {"date_range": [lo, hi], "dimensions": []}, token=server.everything)
    assert r.status_code == 200, r.text
    first_day = DAY.date()
    within = [t for t, _ in pageviews if t.date() == first_day and 10 <= t.hour < 14]
    assert r.json()["results"] == [{"metrics": [len(within)], "dimensions": []}]


def test_named_ranges_and_the_plain_time_dimension(server):
    """7d: the seven days before today; all: from the first event to today. Plain
    ``time`` over a few days is days."""
    today = datetime.now(timezone.utc).date()
    days = defaultdict(int)
    for e in TRAFFIC:
        if e["site"] == SITE:
            days[e["ts"][:10]] += 1
    for named in ("7d", "all"):
        body = {"site_id": SITE, "metrics": ["events"], "date_range": named, "dimensions": ["time"]}
        r = _post(server, body | {"include": {"time_labels": True}})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [{"metrics": [n], "dimensions": [d]} for d, n in sorted(days.items())]
        first = today - timedelta(days=7) if named == "7d" else DAY.date()
        last = today - timedelta(days=1) if named == "7d" else today
        labels = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
        assert r.json()["meta"]["time_labels"] == labels


def test_a_goal_dimension_of_a_site_without_goals_lists_nothing(server):
    for dimensions in (["event:goal"], ["event:goal", "event:page"]):
        body = {"site_id": OTHER, "metrics": ["visitors"], "date_range": WHOLE_DAYS, "dimensions": dimensions}
        r = _post(server, body, token=server.other)
        assert r.status_code == 200, r.text
        assert r.json()["results"] == []


# --- include.comparisons and 24h ------------------------------------------------------------


def _percent_change(now: int, before: int) -> int:
    """Plausible's change of a count: whole percent, a half away from zero; 100 from nothing."""
    if before == 0:
        return 100 if now > 0 else 0
    x = Fraction(100 * (now - before), before)
    magnitude = int(abs(x) + Fraction(1, 2))
    return magnitude if x >= 0 else -magnitude


def _day_span(first: datetime, days: int = 1) -> tuple[datetime, datetime]:
    return first, first + timedelta(days=days)


def test_previous_period_compares_each_row_with_the_days_just_before(server):
    """The second day against the first: one row, its comparison and each metric's change."""
    metrics = ["visitors", "pageviews", "events"]
    second = DAYS[1].date().isoformat()
    body = {"site_id": SITE, "metrics": metrics, "date_range": [second, second]}
    r = _post(server, body | {"include": {"comparisons": {"mode": "previous_period"}}})
    assert r.status_code == 200, r.text
    now = expected(metrics, [], [], *_day_span(DAYS[1])).get((), [0, 0, 0])
    before = expected(metrics, [], [], *_day_span(DAY)).get((), [0, 0, 0])
    change = [_percent_change(a, b) for a, b in zip(now, before, strict=True)]
    assert r.json()["results"] == [
        {"metrics": now, "dimensions": [], "comparison": {"metrics": before, "dimensions": [], "change": change}}
    ]
    first = DAY.date().isoformat()
    assert r.json()["query"]["comparison_date_range"] == [f"{first}T00:00:00+00:00", f"{first}T23:59:59+00:00"]


def test_a_compared_time_dimension_lists_every_bucket_beside_its_counterpart(server):
    """Two days against the two before them (no traffic): every day listed, each beside the
    day at the same position, and Plausible's 100 % change from nothing."""
    body = {"site_id": SITE, "metrics": ["pageviews"], "date_range": WHOLE_DAYS, "dimensions": ["time:day"]}
    r = _post(server, body | {"include": {"comparisons": {"mode": "previous_period"}, "time_labels": True}})
    assert r.status_code == 200, r.text
    per_day = expected(["pageviews"], ["time:day"], [], *SPAN)
    earlier = [(DAY - timedelta(days=2 - i)).date().isoformat() for i in range(2)]
    want = []
    for day, counterpart in zip(WHOLE_DAYS, earlier, strict=True):
        now = per_day.get((day,), [0])
        comparison = {"metrics": [0], "dimensions": [counterpart], "change": [_percent_change(now[0], 0)]}
        want.append({"metrics": now, "dimensions": [day], "comparison": comparison})
    assert r.json()["results"] == want
    assert r.json()["meta"]["comparison_time_labels"] == earlier


def test_a_custom_comparison_matches_rows_by_their_dimensions(server):
    """Sources of the second day against the first's (a custom range); a source the first
    day lacks is compared with zeros."""
    metrics = ["visitors", "events"]
    second, first = DAYS[1].date().isoformat(), DAY.date().isoformat()
    comparisons = {"mode": "custom", "date_range": [first, first]}
    body = {"site_id": SITE, "metrics": metrics, "date_range": [second, second], "dimensions": ["visit:source"]}
    r = _post(server, body | {"include": {"comparisons": comparisons}})
    assert r.status_code == 200, r.text
    now = expected(metrics, ["visit:source"], [], *_day_span(DAYS[1]))
    before = expected(metrics, ["visit:source"], [], *_day_span(DAY))
    want = []
    for row in ordered(now, metrics, ["visit:source"], None):
        then = before.get(tuple(row["dimensions"]), [0, 0])
        change = [_percent_change(a, b) for a, b in zip(row["metrics"], then, strict=True)]
        want.append(row | {"comparison": {"metrics": then, "dimensions": row["dimensions"], "change": change}})
    assert r.json()["results"] == want


def test_year_over_year_and_24h_ranges(server):
    body = {"site_id": SITE, "metrics": ["visitors"], "date_range": WHOLE_DAYS}
    r = _post(server, body | {"include": {"comparisons": {"mode": "year_over_year"}}})
    assert r.status_code == 200, r.text
    year_before = [DAY.replace(year=DAY.year - 1), DAYS[1].replace(year=DAY.year - 1)]
    assert r.json()["query"]["comparison_date_range"] == [
        f"{year_before[0].date().isoformat()}T00:00:00+00:00",
        f"{year_before[1].date().isoformat()}T23:59:59+00:00",
    ]
    asked = datetime.now(timezone.utc)
    r = _post(server, body | {"date_range": "24h", "dimensions": ["time"]})
    assert r.status_code == 200, r.text
    lo, hi = (datetime.fromisoformat(t) for t in r.json()["query"]["date_range"])
    assert hi - lo == timedelta(hours=24) - timedelta(seconds=1)
    assert abs((hi - asked).total_seconds()) < 30
    assert r.json()["results"] == []  # the traffic is days old; ``time`` over 24 hours is hours
    assert r.json()["query"]["dimensions"] == ["time"]


@pytest.mark.parametrize(
    "comparisons",
    [{"mode": "bogus"}, {"mode": "custom"}, {"mode": "custom", "date_range": ["x", "y"]}, "previous_period"],
)
def test_a_malformed_comparison_is_a_400(server, comparisons):
    body = {"site_id": SITE, "metrics": ["visitors"], "date_range": WHOLE_DAYS, "include": {"comparisons": comparisons}}
    r = _post(server, body)
    assert r.status_code == 400, r.text
    assert "date_range" in r.json()["error"] or "comparisons" in r.json()["error"]


# --- engagement and revenue -------------------------------------------------------------------


def _engagement(pages: tuple[str, ...]) -> dict[str, list]:
    """Per page: [visitors, time_on_page, scroll_depth], worked out as beacon defines them
    (docs/analytics.md): per visitor-day on the page, the engaged time summed and the
    deepest scroll; their means in whole seconds and whole percent, halves up."""
    per: dict[str, dict[int, dict]] = defaultdict(dict)
    viewers: dict[str, set] = defaultdict(set)
    for e in SHOP_TRAFFIC:
        if e["path"] not in pages:
            continue
        if e["name"] != "engagement":
            viewers[e["path"]].add(e["visitor_id"])
            continue
        seen = per[e["path"]].setdefault(e["visitor_id"], {"ms": 0, "depth": 0})
        seen["ms"] += int(e["props"]["engaged_ms"])
        seen["depth"] = max(seen["depth"], int(e["props"]["scroll_depth"]))
    out = {}
    for page, visitors in per.items():
        ms = sum(v["ms"] for v in visitors.values())
        depth = sum(v["depth"] for v in visitors.values())
        out[page] = [
            len(viewers[page]),
            int(_half_up(Fraction(ms, 1000 * len(visitors)))),
            int(_half_up(Fraction(depth, len(visitors)))),
        ]
    return out


SHOP_RANGES = {
    "whole-days": [DAY.date().isoformat(), DAY.date().isoformat()],
    "to-the-second": [f"{DAY.date().isoformat()}T00:00:30+00:00", f"{DAY.date().isoformat()}T23:59:59+00:00"],
}


@pytest.mark.parametrize("range_name", list(SHOP_RANGES))
def test_time_on_page_and_scroll_depth_per_page_and_under_a_page_filter(server, range_name):
    metrics = ["visitors", "time_on_page", "scroll_depth"]
    body = {"site_id": SHOP, "metrics": metrics, "date_range": SHOP_RANGES[range_name]}
    r = _post(server, body | {"dimensions": ["event:page"], "order_by": [["event:page", "asc"]]}, server.everything)
    assert r.status_code == 200, r.text
    want = _engagement(SHOP_PAGES)
    assert r.json()["results"] == [{"metrics": want[p], "dimensions": [p]} for p in sorted(want)]
    r = _post(server, body | {"filters": [["is", "event:page", ["/shop"]]]}, server.everything)
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"metrics": _engagement(("/shop",))["/shop"], "dimensions": []}]
    r = _post(server, body, server.everything)
    assert r.status_code == 400
    assert r.json()["error"] == "Metric `scroll_depth` can only be queried with event:page filters or dimensions."


def _usd(amount: Fraction) -> dict:
    value = _half_up(amount, 2)
    compact = f"{value / 1000:.1f}K" if value >= 1000 else f"{value:.1f}"
    return {"value": value, "currency": "USD", "short": f"${compact}", "long": f"${value:,.2f}"}


@pytest.mark.parametrize("range_name", list(SHOP_RANGES))
def test_revenue_under_a_revenue_goal_is_plausibles_money(server, range_name):
    purchases = [e for e in SHOP_TRAFFIC if e["name"] == "Purchase"]
    total = sum(Fraction(e["revenue_amount"]) for e in purchases)
    metrics = ["visitors", "events", "total_revenue", "average_revenue"]
    body = {"site_id": SHOP, "metrics": metrics, "date_range": SHOP_RANGES[range_name]}
    r = _post(server, body | {"filters": [["is", "event:goal", ["Purchase"]]]}, server.everything)
    assert r.status_code == 200, r.text
    buyers = len({e["visitor_id"] for e in purchases})
    want = [buyers, len(purchases), _usd(total), _usd(total / len(purchases))]
    assert r.json()["results"] == [{"metrics": want, "dimensions": []}]
    assert "metric_warnings" not in r.json()["meta"]


def test_revenue_without_one_currency_of_revenue_goals_is_null_with_plausibles_warning(server):
    body = {"site_id": SHOP, "metrics": ["visitors", "total_revenue"], "date_range": SHOP_RANGES["whole-days"]}
    visitors = len({e["visitor_id"] for e in SHOP_TRAFFIC})
    for filters, code in (
        ([], "no_revenue_goals_matching"),
        ([["is", "event:goal", ["Purchase", "Refund"]]], "no_single_revenue_currency"),
    ):
        r = _post(server, body | {"filters": filters}, server.everything)
        assert r.status_code == 200, r.text
        if not filters:
            assert r.json()["results"] == [{"metrics": [visitors, None], "dimensions": []}]
        assert r.json()["meta"]["metric_warnings"]["total_revenue"]["code"] == code
