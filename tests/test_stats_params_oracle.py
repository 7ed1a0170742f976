"""The Stats API's parameter layer, checked from outside: requests over HTTP to a running
`beacon serve` over `period` × `date` at month and year edges × `compare` × filter
syntax (`|`, escaped `\\|`, `;`, `!=`, `~`) × `limit`/`page`, each answer equal to the
one computed here, in plain Python, from the generated events (tests/traffic.py's
Oracle). What a period covers, how a filter string reads and which page of rows comes
back are worked out below from docs/analytics.md's rules, not by api/stats_params.py.
"""

from __future__ import annotations

import calendar
import json
import random
import time
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queries.model import Filter, StatsQuery
from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli
from tests.traffic import Event, Oracle

SITE = "oracle.test"
PAGES = ("/", "/a", "/b", "/a|b", "/blog/x", "/pricing")
EDGE_DAYS = [
    date(2025, 1, 1),
    date(2025, 2, 28),
    date(2025, 3, 1),
    date(2025, 6, 30),
    date(2025, 7, 1),
    date(2025, 12, 31),
    date(2026, 1, 1),
    date(2026, 1, 31),
    date(2026, 2, 1),
    date(2026, 2, 28),
    date(2026, 3, 1),
    date(2026, 3, 31),
    date(2026, 4, 1),
    date(2026, 6, 30),
    date(2026, 7, 1),
    date(2026, 9, 30),
    date(2026, 10, 1),
    date(2026, 11, 30),
]
PERIODS = ("day", "7d", "30d", "month", "6mo", "12mo", "custom")
DAY = timedelta(days=1)


def _generated() -> list[Event]:
    """A few visitors on each edge day, and the days either side: some just after
    midnight and just before the next, some in several events (a visit), a page with a
    literal | in its path."""
    rng = random.Random(27)
    events = []
    days = sorted({d + k * DAY for d in EDGE_DAYS for k in (-1, 0, 1)})
    for day in days:
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        for _ in range(rng.randint(1, 4)):
            at = midnight + timedelta(seconds=rng.choice((5, 3600 * rng.uniform(1, 22), 86400 - 40)))
            visitor = rng.getrandbits(62) | 1
            for step in range(rng.choice((1, 1, 2, 3))):
                when = min(at + timedelta(seconds=20 * step), midnight + DAY - timedelta(seconds=1))
                custom = step > 0 and rng.random() < 0.3
                events.append(
                    Event(
                        SITE,
                        visitor,
                        when,
                        "event" if custom else "pageview",
                        "Signup" if custom else "",
                        rng.choice(PAGES),
                        country=rng.choice(("DE", "FR")),
                    )
                )
    return events


EVENTS = _generated()
ORACLE = Oracle(EVENTS)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("oracle") / "data"
    with BeaconServer(data, "--visit-build-interval", "0.5") as running:
        cli("sites", "add", SITE, "--data-dir", str(data))
        store = RemoteStore(socket_path(data))
        try:
            rows = "\n".join(json.dumps(e.row()) for e in EVENTS)
            store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + rows)
        finally:
            store.close()
        running.token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        _wait_for_visits(running)
        yield running


def _get(server, endpoint: str, params: dict) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/stats/{endpoint}",
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {server.token}"},
    )


def _wait_for_visits(server, timeout: float = 90) -> None:
    """Visits (and closed days' roll-ups) are built in the background: poll until all are."""
    everything = {"site_id": SITE, "period": "custom", "date": "2024-12-01,2026-12-01", "metrics": "visits"}
    want = sum(v.site == SITE for v in ORACLE.visits)
    deadline = time.monotonic() + timeout
    while True:
        r = _get(server, "aggregate", everything)
        if r.status_code == 200 and r.json()["results"]["visits"]["value"] == want:
            return
        assert time.monotonic() < deadline, f"visits not built in {timeout} s: {r.text} (want {want})"
        time.sleep(0.3)


# --- the rules, as the documentation states them --------------------------------------------


def _month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def expected_days(period: str, when: str) -> tuple[date, date]:
    """First and last day (both included) of ``period`` for the ``date`` parameter ``when``."""
    if period == "custom":
        first, last = (date.fromisoformat(d) for d in when.split(","))
        return first, last
    day = date.fromisoformat(when)
    if period == "day":
        return day, day
    if period in ("7d", "30d"):
        n = int(period[:-1])
        return day - n * DAY, day - DAY
    back = {"month": 0, "6mo": 5, "12mo": 11}[period]
    return _month_start(day, back), _month_end(day)


def expected_interval(period: str, asked: str | None) -> str:
    if asked is None:
        return {"day": "hour", "6mo": "month", "12mo": "month"}.get(period, "date")
    if period == "day" and asked != "month":
        return "hour"
    return "date" if asked == "day" else asked


def labels(first: date, last: date, interval: str) -> list[str]:
    if interval == "hour":
        return [f"{first} {h:02d}:00:00" for h in range(24)]
    days = [first + k * DAY for k in range((last - first).days + 1)]
    if interval == "date":
        return [d.isoformat() for d in days]
    return sorted({d.strftime("%Y-%m-01") for d in days})


def rendered(filters: list[tuple[str, str, tuple[str, ...]]]) -> str:
    """The ``filters`` parameter: a literal | in a value escaped as \\|, ``;`` between filters."""
    return ";".join(f"{prop}{op}" + "|".join(v.replace("|", "\\|") for v in values) for prop, op, values in filters)


def change(now: int, before: int) -> int:
    """Plausible's percent change: a half rounds away from zero (−62.5 is −63)."""
    if before == 0:
        return 100 if now > 0 else 0
    percent = Fraction(now - before, before) * 100
    magnitude = int(abs(percent) + Fraction(1, 2))
    return magnitude if percent >= 0 else -magnitude


def _query(first: date, last: date, metrics: tuple[str, ...], filters, **more) -> StatsQuery:
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    end = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + DAY
    return StatsQuery(SITE, start, end, metrics, tuple(Filter(p, o, v) for p, o, v in filters), **more)


# --- generated requests ---------------------------------------------------------------------

FILTERS = st.lists(
    st.one_of(
        st.tuples(
            st.just("event:page"),
            st.sampled_from(["==", "!="]),
            st.lists(st.sampled_from(PAGES), min_size=1, max_size=3, unique=True).map(tuple),
        ),
        st.tuples(
            st.just("event:page"),
            st.just("~"),
            st.lists(st.sampled_from(["a", "|", "blog", "pri"]), min_size=1, max_size=2, unique=True).map(tuple),
        ),
        st.tuples(st.just("event:name"), st.sampled_from(["==", "!="]), st.just(("Signup",))),
        st.tuples(
            st.just("visit:country"), st.sampled_from(["==", "!="]), st.sampled_from([("DE",), ("FR",), ("DE", "FR")])
        ),
    ),
    max_size=2,
    unique_by=lambda f: f[0],
)


@st.composite
def period_and_date(draw) -> tuple[str, str]:
    period = draw(st.sampled_from(PERIODS))
    day = draw(st.sampled_from(EDGE_DAYS)) + draw(st.sampled_from([0, 0, 1, -1])) * DAY
    if period != "custom":
        return period, day.isoformat()
    length = draw(st.sampled_from([0, 1, 6, 27, 30, 60, 200]))
    return period, f"{day - length * DAY},{day}"


def _metrics(filters) -> tuple[str, ...]:
    # Visit counts only without filters: with an event filter, visits are those with a
    # matching event, a rule of the queries (tests/test_queries.py), not of the parameters.
    return ("visitors", "pageviews", "events") + (() if filters else ("visits",))


SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(chosen=period_and_date(), compare=st.booleans(), filters=FILTERS)
def test_aggregate_over_periods_filters_and_compare(server, chosen, compare, filters):
    period, when = chosen
    metrics = _metrics(filters)
    params = {"site_id": SITE, "period": period, "date": when, "metrics": ",".join(metrics)}
    if filters:
        params["filters"] = rendered(filters)
    if compare:
        params["compare"] = "previous_period"
    r = _get(server, "aggregate", params)
    assert r.status_code == 200, (params, r.text)
    first, last = expected_days(period, when)
    now = ORACLE.aggregate(_query(first, last, metrics, filters))
    expected = {m: {"value": now[m]} for m in metrics}
    if compare:
        length = last - first + DAY
        before = ORACLE.aggregate(_query(first - length, last - length, metrics, filters))
        expected = {
            m: {"value": now[m], "comparison_value": before[m], "change": change(now[m], before[m])} for m in metrics
        }
    assert r.json()["results"] == expected, params


@SETTINGS
@given(chosen=period_and_date(), interval=st.sampled_from([None, "date", "day", "month"]), filters=FILTERS)
def test_timeseries_over_periods_intervals_and_filters(server, chosen, interval, filters):
    period, when = chosen
    metrics = _metrics(filters)
    params = {"site_id": SITE, "period": period, "date": when, "metrics": ",".join(metrics)}
    if filters:
        params["filters"] = rendered(filters)
    if interval:
        params["interval"] = interval
    r = _get(server, "timeseries", params)
    assert r.status_code == 200, (params, r.text)
    first, last = expected_days(period, when)
    bucket = expected_interval(period, interval)
    query = _query(first, last, metrics, filters, interval=bucket)
    assert r.json()["results"] == ORACLE.timeseries(query, labels(first, last, bucket)), params


@SETTINGS
@given(chosen=period_and_date(), filters=FILTERS, limit=st.integers(1, 4), page=st.integers(1, 4))
def test_breakdown_pages_over_periods_and_filters(server, chosen, filters, limit, page):
    period, when = chosen
    metrics = ("visitors", "pageviews")
    params = {
        "site_id": SITE,
        "period": period,
        "date": when,
        "metrics": ",".join(metrics),
        "property": "event:page",
        "limit": str(limit),
        "page": str(page),
    }
    if filters:
        params["filters"] = rendered(filters)
    r = _get(server, "breakdown", params)
    assert r.status_code == 200, (params, r.text)
    first, last = expected_days(period, when)
    rows = ORACLE.breakdown(_query(first, last, metrics, filters, property="event:page", limit=1000), "page")
    ranked = sorted(rows, key=lambda row: (-row["visitors"], row["page"]))
    assert r.json()["results"] == ranked[(page - 1) * limit : page * limit], params


def test_the_generated_traffic_reaches_every_edge(server):
    """The oracle's numbers are not all zero: each edge day has traffic, and the page
    with a literal | is among it (so the escaped filter is tested on a real row)."""
    days = {e.ts.date() for e in EVENTS}
    assert all(d in days for d in EDGE_DAYS)
    assert any(e.path == "/a|b" for e in EVENTS) and any(e.ts.hour == 23 and e.ts.minute == 59 for e in EVENTS)
    r = _get(
        server,
        "aggregate",
        {
            "site_id": SITE,
            "period": "day",
            "date": "2026-01-01",
            "metrics": "pageviews",
            "filters": "event:page==/a\\|b|/",
        },
    )
    want = sum(e.type == "pageview" and e.path in ("/a|b", "/") and e.ts.date() == date(2026, 1, 1) for e in EVENTS)
    assert r.json()["results"]["pageviews"]["value"] == want
