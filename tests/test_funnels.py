"""Funnels, end to end: defined with ``beacon funnels``, read through
``GET /api/v1/stats/funnel`` of a running ``beacon serve``, checked against an oracle
that cuts visits and walks each visit's steps in plain Python (docs/analytics.md,
"Funnels"), without any of the code under test."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli
from tests.traffic import Event

SITE, ZONED = "funnels.test", "zoned.test"
TORONTO = "America/Toronto"
FIRST, LAST = date(2026, 11, 2), date(2026, 11, 4)  # the period asked: custom, both days included
PERIOD = {"period": "custom", "date": f"{FIRST},{LAST}"}
GAP = timedelta(minutes=30)
FUNNELS = {
    SITE: {
        "Signup": ["page:/pricing", "event:Signup"],
        "Blog": ["page:/blog/**", "page:/pricing", "event:Signup"],
        "Long": ["page:/", "page:/blog/*", "page:/pricing", "event:Signup", "event:Play"],
        "Eight": ["page:/", "page:/blog/a", "page:/pricing", "event:Signup"]
        + ["page:/docs", "event:Play", "page:/blog/b/*", "page:/**"],
    },
    ZONED: {"Signup": ["page:/pricing", "event:Signup"]},
}
PAGES = ("/", "/pricing", "/blog/a", "/blog/b/c", "/docs")
NAMES = ("Signup", "Play")
SOURCES = ("", "google", "twitter.com")
JOURNEY = ("/", "/blog/a", "/pricing", "Signup", "Play")


# --- the oracle -------------------------------------------------------------------------


def completes(e: Event, step: str) -> bool:
    kind, value = step.split(":", 1)
    if kind == "event":
        return e.type == "event" and e.name == value
    pattern = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", value.replace("**", "*")))
    return e.type == "pageview" and re.fullmatch(pattern, e.path) is not None


def visits_of(events: list[Event], zone: str) -> list[list[Event]]:
    """A visitor's events with no gap over 30 minutes, within one local day."""
    by_day = defaultdict(list)
    for e in events:
        by_day[(e.visitor_id, e.ts.astimezone(ZoneInfo(zone)).date())].append(e)
    visits = []
    for evs in by_day.values():
        evs.sort(key=lambda e: e.ts)
        current = [evs[0]]
        for e in evs[1:]:
            if e.ts - current[-1].ts > GAP:
                visits.append(current)
                current = []
            current.append(e)
        visits.append(current)
    return visits


def level(visit: list[Event], steps: list[str], keeps) -> int:
    reached = 0
    for e in visit:
        if reached < len(steps) and keeps(e) and completes(e, steps[reached]):
            reached += 1
    return reached


def expected(
    events: list[Event], zone: str, steps: list[str], visit_keeps=lambda v: True, keeps=lambda e: True
) -> dict:
    """The figures of ``steps`` over the period's local days: visits kept by
    ``visit_keeps``, events by ``keeps``."""
    tz = ZoneInfo(zone)
    lo = datetime.combine(FIRST, datetime.min.time(), tz)
    hi = datetime.combine(LAST + timedelta(days=1), datetime.min.time(), tz)
    seen, best = set(), defaultdict(int)
    for visit in visits_of(events, zone):
        if not lo <= visit[0].ts < hi or not visit_keeps(visit) or not any(keeps(e) for e in visit):
            continue
        seen.add(visit[0].visitor_id)
        best[visit[0].visitor_id] = max(best[visit[0].visitor_id], level(visit, steps, keeps))
    reached = [sum(1 for b in best.values() if b >= k) for k in range(1, len(steps) + 1)]
    return {"all_visitors": len(seen), "reached": reached}


def pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


# --- traffic ----------------------------------------------------------------------------


def utc(day: date, hour: int, minute: int = 0, second: int = 0, zone: str = "UTC") -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def scripted(site: str, visitor: int, campaign: str, start: datetime, script: list[tuple[int, str]]) -> list[Event]:
    """One visitor's events: (seconds after ``start``, "/path" or "Event name")."""
    out = []
    for seconds, what in script:
        at = start + timedelta(seconds=seconds)
        if what.startswith("/"):
            out.append(Event(site, visitor, at, path=what, utm_campaign=campaign))
        else:
            out.append(Event(site, visitor, at, type="event", name=what, path="/signup", utm_campaign=campaign))
    return out


MINUTE = 60
SCENARIOS = {
    # campaign: [(visitor, script)], and the Signup funnel's visitors per step
    "ordered": ([(1, [(0, "/pricing"), (60, "Signup")]), (2, [(0, "/"), (30, "/pricing"), (90, "Signup")])], [2, 2]),
    "out_of_order": ([(3, [(0, "/"), (20, "Signup"), (40, "/pricing")]), (4, [(0, "Signup")])], [1, 0]),
    "repeated": ([(5, [(0, "/pricing"), (10, "/pricing"), (20, "Signup"), (30, "/pricing"), (40, "Signup")])], [1, 1]),
    # 31 minutes apart: two visits; exactly 30: one (a gap of 30 minutes continues a visit)
    "cut": ([(6, [(0, "/pricing"), (31 * MINUTE, "Signup")]), (7, [(0, "/pricing"), (30 * MINUTE, "Signup")])], [2, 1]),
}


# The longest funnel (8 steps) done whole, and up to its 5th step (Play missing).
EIGHT = ["/", "/blog/a", "/pricing", "Signup", "/docs", "Play", "/blog/b/c", "/x"]
EIGHT_SCRIPTS = [(8, list(enumerate(EIGHT))), (9, [(i, w) for i, w in enumerate(EIGHT) if w != "Play"])]


def scenario_events() -> list[Event]:
    events = []
    for visitor, script in EIGHT_SCRIPTS:
        events += scripted(SITE, 1000 + visitor, "eight", utc(FIRST, 11), script)
    for campaign, (visitors, _) in SCENARIOS.items():
        for visitor, script in visitors:
            events += scripted(SITE, 1000 + visitor, campaign, utc(FIRST, 10), script)
    return events


def random_events(site: str, zone: str, seed: int) -> list[Event]:
    """Visitors on the days around the period (some just outside it), each with a few
    visits whose gaps are sometimes over 30 minutes; every visitor's times are distinct."""
    rng = random.Random(seed)
    events = []
    for day_number in range(-1, (LAST - FIRST).days + 2):
        day = FIRST + timedelta(days=day_number)
        for n in range(40):
            visitor = rng.randrange(1, 2**62)
            source = rng.choice(SOURCES)
            # Some start just before the local midnight, so their visits are cut there.
            at = utc(day, 23, 40, zone=zone) if n % 10 == 0 else utc(day, rng.randrange(0, 23), zone=zone)
            for i in range(rng.randrange(1, 9)):
                at += timedelta(seconds=rng.choice((5, 50, 200, 1500, 1799, 1800, 1801, 2400)), milliseconds=n + 1)
                # Most events follow the longest funnel's journey, so that some visits reach its end.
                what = JOURNEY[i % len(JOURNEY)] if rng.random() < 0.8 else rng.choice(PAGES + NAMES)
                if what.startswith("/"):
                    events.append(Event(site, visitor, at, path=what, source=source))
                else:
                    events.append(Event(site, visitor, at, type="event", name=what, path="/signup", source=source))
    return events


TRAFFIC = {SITE: random_events(SITE, "UTC", 25) + scenario_events(), ZONED: random_events(ZONED, TORONTO, 26)}
ZONES = {SITE: "UTC", ZONED: TORONTO}


def _insert(data_dir, events: list[Event]) -> None:
    store = RemoteStore(socket_path(data_dir))
    try:
        rows = "\n".join(json.dumps(e.row()) for e in events)
        store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + rows)
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("funnels") / "data"
    with BeaconServer(data) as running:
        cli("sites", "add", SITE, "--data-dir", str(data))
        cli("sites", "add", ZONED, "--timezone", TORONTO, "--data-dir", str(data))
        for site, funnels in FUNNELS.items():
            for name, steps in funnels.items():
                cli("funnels", "add", site, name, *[f"--step={s}" for s in steps], "--data-dir", str(data))
        for events in TRAFFIC.values():
            _insert(data, events)
        running.token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        yield running


def get_funnel(server, site: str, name: str, **more) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/stats/funnel",
        params={"site_id": site, "funnel": name, **PERIOD, **more},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=60,
    )


def assert_matches(answer: dict, steps: list[str], want: dict) -> None:
    reached = want["reached"]
    labels = [s.split(":", 1)[1] if s.startswith("event:") else f"Visit {s[5:]}" for s in steps]
    assert [s["label"] for s in answer["steps"]] == labels
    assert [s["visitors"] for s in answer["steps"]] == reached
    assert answer["all_visitors"] == want["all_visitors"]
    assert answer["entering_visitors"] == reached[0]
    assert answer["never_entering_visitors"] == want["all_visitors"] - reached[0]
    for i, step in enumerate(answer["steps"]):
        before = reached[i - 1] if i else reached[0]
        assert step["dropoff"] == before - reached[i]
        assert step["conversion_rate"] == pct(reached[i], reached[0])
        assert step["conversion_rate_step"] == pct(reached[i], before)
        assert step["dropoff_percentage"] == pct(before - reached[i], before)


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("site,name", [(s, n) for s, funnels in FUNNELS.items() for n in funnels])
def test_each_funnel_counts_what_the_oracle_counts(server, site, name):
    steps = FUNNELS[site][name]
    r = get_funnel(server, site, name)
    assert r.status_code == 200, r.text
    want = expected(TRAFFIC[site], ZONES[site], steps)
    assert want["reached"][-1] > 0  # the traffic reaches the end of every funnel
    assert_matches(r.json()["results"], steps, want)
    # Which path answered depends on whether the server's builder has run yet; both
    # agree (tests/test_funnel_paths.py checks each, with the watermark placed).
    assert r.json()["meta"]["timezone"] == ZONES[site]
    assert r.json()["meta"]["source"] in ("events", "aggregates")


@pytest.mark.parametrize("campaign", list(SCENARIOS))
def test_scenarios_ordered_out_of_order_repeated_and_cut(server, campaign):
    """Each scenario's visitors alone (a visit filter on their campaign)."""
    steps = FUNNELS[SITE]["Signup"]
    r = get_funnel(server, SITE, "Signup", filters=f"visit:utm_campaign=={campaign}")
    assert r.status_code == 200, r.text
    want = expected(TRAFFIC[SITE], "UTC", steps, visit_keeps=lambda v: v[0].utm_campaign == campaign)
    assert want["reached"] == SCENARIOS[campaign][1]  # the oracle agrees with the scenario's reading
    assert_matches(r.json()["results"], steps, want)


def test_a_funnel_of_eight_steps_is_followed_to_its_end(server):
    steps = FUNNELS[SITE]["Eight"]
    r = get_funnel(server, SITE, "Eight", filters="visit:utm_campaign==eight")
    want = expected(TRAFFIC[SITE], "UTC", steps, visit_keeps=lambda v: v[0].utm_campaign == "eight")
    assert want["reached"] == [2, 2, 2, 2, 2, 1, 1, 1]
    assert_matches(r.json()["results"], steps, want)


FILTERS = {
    "visit:source==google": (lambda v: v[0].source == "google", lambda e: True),
    "visit:source!=google|twitter.com": (lambda v: v[0].source not in ("google", "twitter.com"), lambda e: True),
    "visit:entry_page==/pricing": (
        lambda v: next((e.path for e in v if e.type == "pageview"), "") == "/pricing",
        lambda e: True,
    ),
    "event:page~/blog": (lambda v: True, lambda e: "/blog" in e.path),
    "event:page!=/blog/b/c;visit:source==google": (
        lambda v: v[0].source == "google",
        lambda e: e.path != "/blog/b/c",
    ),
    "event:name!=Play": (lambda v: True, lambda e: e.type == "pageview" or e.name != "Play"),
}


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize("name", ["Blog", "Long"])
def test_filters_choose_visits_and_events(server, filters, name):
    steps = FUNNELS[SITE][name]
    visit_keeps, keeps = FILTERS[filters]
    r = get_funnel(server, SITE, name, filters=filters)
    assert r.status_code == 200, r.text
    assert_matches(r.json()["results"], steps, expected(TRAFFIC[SITE], "UTC", steps, visit_keeps, keeps))


def test_a_zoned_site_cuts_visits_and_the_period_at_its_midnight(server):
    steps = FUNNELS[ZONED]["Signup"]
    answer = get_funnel(server, ZONED, "Signup").json()["results"]
    want = expected(TRAFFIC[ZONED], TORONTO, steps)
    assert_matches(answer, steps, want)
    # The same traffic read in UTC days would differ: the zone matters to this check.
    assert expected(TRAFFIC[ZONED], "UTC", steps) != want


@pytest.mark.parametrize(
    "params,parameter,message",
    [
        ({"funnel": "Nope"}, "funnel", "has no funnel named 'Nope'"),
        ({"funnel": ""}, "funnel", "funnel is required"),
        ({"filters": "event:goal==Signup"}, None, "cannot be filtered by event:goal"),
        ({"filters": "visit:nope==x"}, "filters", "unknown property"),
        ({"period": "fortnight"}, "period", "period must be one of"),
    ],
)
def test_bad_requests_get_a_400_naming_the_problem(server, params, parameter, message):
    r = get_funnel(server, SITE, params.pop("funnel", "Signup"), **params)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert r.json().get("parameter") == parameter


def test_a_token_of_another_site_is_refused(server):
    other = cli("tokens", "create", "--role", "analyst", "--site", ZONED, "--data-dir", str(server.data_dir))
    r = httpx.get(
        f"{server.url}/api/v1/stats/funnel",
        params={"site_id": SITE, "funnel": "Signup"},
        headers={"Authorization": f"Bearer {other.stdout.strip()}"},
    )
    assert r.status_code == 403
    assert (
        httpx.get(f"{server.url}/api/v1/stats/funnel", params={"site_id": SITE, "funnel": "Signup"}).status_code == 401
    )


def test_the_cli_lists_and_removes_funnels(server):
    data = ["--data-dir", str(server.data_dir)]
    listed = cli("funnels", "list", *data).stdout.splitlines()
    assert listed == sorted(
        f"{site}\t{name}\t{' '.join(steps)}" for site, fs in FUNNELS.items() for name, steps in fs.items()
    )
    assert cli("funnels", "list", ZONED, *data).stdout.splitlines() == [f"{ZONED}\tSignup\tpage:/pricing event:Signup"]
    cli("funnels", "add", ZONED, "Gone", "--step", "page:/", "--step", "event:Play", *data)
    assert get_funnel(server, ZONED, "Gone").status_code == 200
    assert cli("funnels", "remove", ZONED, "Gone", *data).stdout.strip() == "removed funnel Gone"
    assert get_funnel(server, ZONED, "Gone").status_code == 400
    again = cli("funnels", "remove", ZONED, "Gone", *data, check=False)
    assert again.returncode == 1 and "has no funnel named 'Gone'" in again.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--step", "page:/"], "a funnel has 2 to 8 steps, got 1"),
        ([f"--step=page:/{i}" for i in range(9)], "a funnel has 2 to 8 steps, got 9"),
        (["--step", "page:/", "--step", "click:/x"], "a step is page:PATH or event:NAME, got 'click:/x'"),
        (["--step", "page:/", "--step", "pricing"], "a step is page:PATH or event:NAME, got 'pricing'"),
        (["--step", "page:/", "--step", "page:pricing"], "a page step is a path starting with '/'"),
        (["--step", "page:/", "--step", "event:"], "must be 1 to 2000 characters"),
        (["--step", "page:/", "--step", "event:pageview"], "cannot be the event 'pageview'"),
        (["--step", "page:/a", "--step", "event:X", "--step", "page:/a"], "'page:/a' is named twice"),
    ],
)
def test_the_cli_refuses_bad_funnels_naming_the_problem(server, args, message):
    result = cli("funnels", "add", SITE, "Bad", *args, "--data-dir", str(server.data_dir), check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_the_cli_refuses_a_taken_name_and_an_unknown_site(server):
    data = ["--data-dir", str(server.data_dir)]
    taken = cli("funnels", "add", SITE, "Signup", "--step", "page:/", "--step", "event:X", *data, check=False)
    assert taken.returncode == 2 and "already has a funnel named 'Signup'" in taken.stderr
    unknown = cli("funnels", "add", "nope.test", "F", "--step", "page:/", "--step", "event:X", *data, check=False)
    assert unknown.returncode == 2 and "nope.test is not a registered site" in unknown.stderr


def test_query_plan_says_which_rows_answer_a_funnel():
    asked = cli("query-plan", f"funnel?site_id={SITE}&funnel=Signup&filters=visit:source==google;event:page~/blog")
    plan = json.loads(asked.stdout)["plan"]
    assert plan["source"] == "aggregates" and plan["rolled_up_days"] is None
    assert plan["visit_filters"] == ["visit:source"] and plan["event_filters"] == ["event:page"]
    assert "sequence" in plan["rows"]
    by_name = json.loads(cli("query-plan", f"funnel?site_id={SITE}&filters=event:name!=Play").stdout)["plan"]
    assert by_name["source"] == "events" and by_name["event_filters"] == ["event:name"]
    refused = cli("query-plan", f"funnel?site_id={SITE}&filters=event:goal==Signup", check=False)
    assert refused.returncode == 1 and "cannot be filtered by event:goal" in refused.stderr
