"""Goal mode: with an ``event:goal`` filter, every breakdown answers per row the
converting visitors (``visitors``), the conversions (``events``), the pageviews among
them (``pageviews``: Plausible's, 0 for an event goal) and the conversion rate
(converting visitors over the row's visitors without the goal filter), on both
paths. Page goals may hold wildcards (``*`` within a path segment, ``**`` across).
Under a revenue goal (Purchase, in EUR) rows also answer ``total_revenue`` (the EUR
amounts of the conversions; other currencies are not counted) and ``average_revenue``
(over the conversions with an EUR amount).

The expected values are computed here, in plain Python, from the generated visits:
each generated visit is one visitor's, a few minutes long, so nothing of the
project's is needed to know its visits, entry and exit pages.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

import queries
from queries.model import Filter, QueryError, StatsQuery
from queries.planner import make_plan
from rollups.visit_builder import build_closed_visits
from storage.goals import add_goal
from tests.traffic import Event, batches, clean

SITE = "goals.test"
DAY = timedelta(days=1)
GOALS = [("event", "Signup"), ("page", "/pricing"), ("page", "/blog/*"), ("page", "/docs/**"), ("event", "Purchase")]
CURRENCY = "EUR"  # Purchase's
# A Purchase's revenue, by event id: (amount, currency). Some in another currency, some none.
REVENUE: dict[str, tuple[Decimal, str]] = {}
PAGES = ("/", "/pricing", "/blog", "/blog/a", "/blog/b", "/blog/a/comments", "/docs/x", "/docs/x/y", "/about")
SOURCES = ("", "google", "twitter.com", "news.ycombinator.com")
UTMS = ("", "", "spring", "autumn")
PLACES = (("DE", "DE-BE", "2950159"), ("FR", "FR-IDF", "2988507"), ("US", "US-CA", "5391959"), ("", "", ""))
SOFTWARE = (
    ("Chrome", "120", "Windows", "10", "desktop"),
    ("Safari", "17", "iOS", "17.2", "mobile"),
    ("Firefox", "121", "Linux", "", "desktop"),
    ("", "", "", "", ""),
)
PLANS = ("free", "pro", "team")


@dataclass
class Visit:
    visitor: int
    events: list[Event]

    @property
    def pageviews(self) -> list[Event]:
        return [e for e in self.events if e.type == "pageview"]


# --- the oracle: plain Python ---------------------------------------------------------------

# A visit property: how the generated visit gives it, and the label of its blank value
# (None: rows with a blank value are left out, as Plausible does).
VISIT_PROPERTIES = {
    "visit:source": (lambda v: v.events[0].source, "Direct / None"),
    "visit:referrer": (lambda v: v.events[0].referrer, "Direct / None"),
    "visit:utm_campaign": (lambda v: v.events[0].utm_campaign, None),
    "visit:utm_source": (lambda v: v.events[0].utm_source, None),
    "visit:utm_medium": (lambda v: v.events[0].utm_medium, None),
    "visit:country": (lambda v: v.events[0].country, None),
    "visit:region": (lambda v: v.events[0].region, None),
    "visit:city": (lambda v: v.events[0].city, None),
    "visit:device": (lambda v: v.events[0].device, "(not set)"),
    "visit:browser": (lambda v: v.events[0].browser, "(not set)"),
    "visit:os": (lambda v: v.events[0].os, "(not set)"),
    "visit:entry_page": (lambda v: v.pageviews[0].path if v.pageviews else "", None),
    "visit:exit_page": (lambda v: v.pageviews[-1].path if v.pageviews else "", None),
}


def wildcard(pattern: str) -> re.Pattern:
    """``*``: any characters but ``/``; ``**``: any characters."""
    parts = re.split(r"(\*\*|\*)", pattern)
    text = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(f"^{text}$")


def completes(e: Event, goal: tuple[str, str]) -> bool:
    kind, value = goal
    if kind == "event":
        return e.type == "event" and e.name == value
    return e.type == "pageview" and bool(wildcard(value).match(e.path))


def goal_named(name: str) -> tuple[str, str]:
    return next(g for g in GOALS if (g[1] if g[0] == "event" else f"Visit {g[1]}") == name)


def rate(part: int, whole: int) -> float:
    if not whole:
        return 0.0
    return float((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def row_values(visit: Visit, event: Event, prop: str) -> str | None:
    """The breakdown value of ``event`` (in ``visit``), None when the row is left out."""
    if prop == "event:page":
        return event.path
    if prop.startswith("event:props:"):
        return event.props.get(prop.removeprefix("event:props:"), "(none)")
    of, blank = VISIT_PROPERTIES[prop]
    value = of(visit)
    if value == "":
        return blank
    return value


def money(amount: Decimal) -> float:
    return float(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def revenue_of(rows: dict[str, dict], revenue: dict, paid: dict) -> None:
    for value, row in rows.items():
        row["total_revenue"] = money(revenue[value])
        row["average_revenue"] = money(revenue[value] / paid[value]) if paid[value] else None


def expected(visits: list[Visit], goal_name: str, prop: str) -> dict[str, dict]:
    goal = goal_named(goal_name)
    converted, conversions, pageviews, everyone = defaultdict(set), defaultdict(int), defaultdict(int), defaultdict(set)
    revenue, paid = defaultdict(Decimal), defaultdict(int)
    for visit in visits:
        for e in visit.events:
            if e.type == "event" and e.name == "engagement":
                continue
            value = row_values(visit, e, prop)
            if value is None:
                continue
            everyone[value].add(visit.visitor)
            if completes(e, goal):
                converted[value].add(visit.visitor)
                conversions[value] += 1
                pageviews[value] += e.type == "pageview"
                amount, currency = REVENUE.get(e.event_id, (Decimal(0), ""))
                if currency == CURRENCY:
                    revenue[value] += amount
                    paid[value] += 1
    rows = {
        value: {
            "visitors": len(who),
            "events": conversions[value],
            "pageviews": pageviews[value],
            "conversion_rate": rate(len(who), len(everyone[value])),
        }
        for value, who in converted.items()
    }
    if goal_name == "Purchase":
        revenue_of(rows, revenue, paid)
    return rows


# --- traffic ---------------------------------------------------------------------------------


def generate(rng: random.Random, first_day: datetime, days: int) -> list[Visit]:
    visits, visitor = [], 1000
    for day in range(days):
        for _ in range(45):
            visitor += 1
            start = first_day + day * DAY + timedelta(hours=rng.randrange(1, 22), minutes=rng.randrange(60))
            visits.append(Visit(visitor, _visit_events(rng, visitor, start)))
    return visits


def _visit_events(rng: random.Random, visitor: int, start: datetime) -> list[Event]:
    country, region, city = rng.choice(PLACES)
    browser, browser_version, os_, os_version, device = rng.choice(SOFTWARE)
    source = rng.choice(SOURCES)
    person = dict(
        country=country,
        region=region,
        city=city,
        browser=browser,
        browser_version=browser_version,
        os=os_,
        os_version=os_version,
        device=device,
        source=source,
        referrer=f"https://{source}/" if source else "",
        utm_campaign=rng.choice(UTMS),
        utm_source=rng.choice(("", "mail")),
        utm_medium=rng.choice(("", "cpc")),
    )
    events, at = [], start
    for i in range(rng.choice((1, 2, 3, 4, 6))):
        at += timedelta(seconds=rng.randrange(5, 300))
        path = rng.choice(PAGES)
        if i > 0 and rng.random() < 0.3:
            props = {"plan": rng.choice(PLANS)} if rng.random() < 0.8 else {}
            name = rng.choice(("Signup", "Signup", "Download", "engagement", "Purchase", "Purchase"))
            events.append(Event(SITE, visitor, at, "event", name, path, props=props, **person))
            if name == "Purchase" and rng.random() < 0.9:
                amount = Decimal(rng.randrange(1, 100_000)) / rng.choice((1, 10, 100, 1000))
                REVENUE[events[-1].event_id] = (amount, rng.choice((CURRENCY,) * 4 + ("USD",)))
        else:
            events.append(Event(SITE, visitor, at, path=path, **person))
    return events


@dataclass
class Traffic:
    visits: list[Visit]
    start: datetime
    end: datetime


@pytest.fixture(scope="module")
def traffic(store) -> Traffic:
    """Three whole days and a morning of one site; visits built at noon of the fourth
    day, so the aggregates path reads rolled-up days, built visits and open ones."""
    clean(store)
    rng = random.Random(25)
    first = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - 10 * DAY
    now = first + 3 * DAY + timedelta(hours=12)
    visits = [v for v in generate(rng, first, 4) if v.events[-1].ts < now - timedelta(minutes=5)]
    for batch in batches(rng, [e for v in visits for e in v.events], 5):
        insert_with_revenue(store, batch)
    for kind, value in GOALS:
        add_goal(store, SITE, kind, value, CURRENCY if value == "Purchase" else "")
    build_closed_visits(store, now)
    yield Traffic(visits, first, first + 4 * DAY)
    clean(store)


def insert_with_revenue(store, events: list[Event]) -> None:
    rows = []
    for e in events:
        amount, currency = REVENUE.get(e.event_id, (Decimal(0), ""))
        rows.append(e.row() | {"revenue_amount": str(amount), "revenue_currency": currency})
    store.insert_json_rows("beacon.events", "\n".join(json.dumps(r) for r in rows).encode())


def ask(t: Traffic, goal: str, prop: str, metrics: tuple[str, ...], source: str) -> StatsQuery:
    return StatsQuery(
        SITE,
        t.start,
        t.end,
        metrics,
        (Filter("event:goal", "==", (goal,)),),
        property=prop,
        limit=1000,
        source=source,
    )


def by_value(rows: list[dict], key: str) -> dict[str, dict]:
    return {row.pop(key): row for row in rows}


GOAL_NAMES = ["Signup", "Visit /pricing", "Visit /blog/*", "Visit /docs/**", "Purchase"]
PROPERTIES = list(VISIT_PROPERTIES) + ["event:page", "event:props:plan"]
METRICS = ("visitors", "events", "pageviews", "conversion_rate")
REVENUE_METRICS = ("total_revenue", "average_revenue")


@pytest.mark.parametrize("prop", PROPERTIES)
@pytest.mark.parametrize("goal", GOAL_NAMES)
@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_every_breakdown_answers_conversions_and_rate_per_row(store, traffic, goal, prop, source):
    metrics = METRICS + (REVENUE_METRICS if goal == "Purchase" else ())
    rows = queries.breakdown(store, ask(traffic, goal, prop, metrics, source))
    key = prop.removeprefix("event:props:").split(":", 1)[-1]
    counts = [row["visitors"] for row in rows]
    assert counts == sorted(counts, reverse=True)
    want = expected(traffic.visits, goal, prop)
    assert want, "the generated traffic converts in every breakdown"
    assert by_value(rows, key) == want


def test_a_wildcard_goal_differs_from_its_literal_path(traffic):
    """The generated pages make the wildcard rules matter: ``/blog/*`` takes
    /blog/a but not /blog/a/comments nor /blog; ``/docs/**`` takes both depths."""
    paths = {e.path for v in traffic.visits for e in v.pageviews}
    blog = {p for p in paths if completes(Event(SITE, 1, traffic.start, path=p), ("page", "/blog/*"))}
    docs = {p for p in paths if completes(Event(SITE, 1, traffic.start, path=p), ("page", "/docs/**"))}
    assert blog == {"/blog/a", "/blog/b"}
    assert docs == {"/docs/x", "/docs/x/y"}


@pytest.mark.parametrize("goal", GOAL_NAMES)
@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_the_aggregate_under_a_goal(store, traffic, goal, source):
    query = StatsQuery(
        SITE,
        traffic.start,
        traffic.end,
        ("visitors", "events", "conversion_rate"),
        (Filter("event:goal", "==", (goal,)),),
        source=source,
    )
    whole = expected(traffic.visits, goal, "visit:device")  # every visit has a device row
    visitors = {v.visitor for v in traffic.visits if any(completes(e, goal_named(goal)) for e in v.events)}
    everyone = {v.visitor for v in traffic.visits if any(not (e.name == "engagement") for e in v.events)}
    assert queries.aggregate(store, query) == {
        "visitors": len(visitors),
        "events": sum(row["events"] for row in whole.values()),
        "conversion_rate": rate(len(visitors), len(everyone)),
    }


@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_the_goal_breakdown_names_wildcard_goals(store, traffic, source):
    query = StatsQuery(
        SITE, traffic.start, traffic.end, ("visitors", "events"), property="event:goal", limit=100, source=source
    )
    rows = by_value(queries.breakdown(store, query), "goal")
    want = {}
    for name in GOAL_NAMES:
        goal = goal_named(name)
        hits = [(v.visitor, e) for v in traffic.visits for e in v.events if completes(e, goal)]
        if hits:
            want[name] = {"visitors": len({who for who, _ in hits}), "events": len(hits)}
    assert rows == want


@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_the_revenue_of_a_revenue_goal_over_the_period(store, traffic, source):
    query = StatsQuery(
        SITE,
        traffic.start,
        traffic.end,
        REVENUE_METRICS,
        (Filter("event:goal", "==", ("Purchase",)),),
        source=source,
    )
    amounts = [
        REVENUE[e.event_id][0]
        for v in traffic.visits
        for e in v.events
        if e.name == "Purchase" and REVENUE.get(e.event_id, (0, ""))[1] == CURRENCY
    ]
    other = [e for v in traffic.visits for e in v.events if REVENUE.get(e.event_id, (0, ""))[1] == "USD"]
    assert amounts and other, "the traffic has EUR amounts, and amounts in another currency"
    assert queries.aggregate(store, query) == {
        "total_revenue": money(sum(amounts)),
        "average_revenue": money(sum(amounts) / len(amounts)),
    }


@pytest.mark.parametrize(
    "filters",
    [(), (Filter("event:goal", "==", ("Signup",)),), (Filter("event:goal", "==", ("Signup", "Purchase")),)],
)
def test_revenue_needs_a_filter_on_revenue_goals_of_one_currency(store, traffic, filters):
    query = StatsQuery(SITE, traffic.start, traffic.end, ("visitors", "total_revenue"), filters)
    with pytest.raises(QueryError, match="total_revenue needs a filter on event:goal naming revenue goals"):
        queries.aggregate(store, query)


def test_an_event_goal_by_a_visit_property_or_page_is_read_from_the_rolled_up_days(traffic):
    for prop in PROPERTIES[:-1]:  # every visit property and the page; not props
        described = make_plan(ask(traffic, "Signup", prop, METRICS, None)).describe()
        assert described["rolled_up_days"] == f"beacon.stats_pairs: {prop} under event:goal", prop


def test_a_day_rolled_up_without_goal_rows_is_read_from_the_events(store, traffic):
    """A day rolled up before migration 0016 has no goal rows (stats_days.goals = 0):
    its conversions come from the events, and the answer stays exact."""
    day = (traffic.start + DAY).date()
    ((zone, rows),) = store.rows("SELECT zone, rows FROM beacon.stats_days FINAL WHERE day = {d:Date}", {"d": day})
    store.command(
        f"DELETE FROM {store.mutable('stats_pairs')} WHERE fdim = 'event:name' AND day = {{d:Date}}", {"d": day}
    )
    store.command(
        "INSERT INTO beacon.stats_days (day, zone, rows, goals) VALUES ({d:Date}, {z:String}, {n:UInt64}, 0)",
        {"d": day, "z": zone, "n": rows},
    )
    for prop in ("visit:source", "visit:city", "event:page"):
        rows = queries.breakdown(store, ask(traffic, "Signup", prop, METRICS, "aggregates"))
        assert by_value(rows, prop.split(":")[-1]) == expected(traffic.visits, "Signup", prop)


@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_the_revenue_by_day(store, traffic, source):
    """The dashboard's chart of a revenue tile: total_revenue per day under the goal."""
    query = StatsQuery(
        SITE,
        traffic.start,
        traffic.end,
        ("total_revenue",),
        (Filter("event:goal", "==", ("Purchase",)),),
        interval="date",
        source=source,
    )
    per_day = defaultdict(Decimal)
    for v in traffic.visits:
        for e in v.events:
            amount, currency = REVENUE.get(e.event_id, (Decimal(0), ""))
            if e.name == "Purchase" and currency == CURRENCY:
                per_day[e.ts.date().isoformat()] += amount
    days = [(traffic.start + i * DAY).date().isoformat() for i in range(4)]
    assert queries.timeseries(store, query) == [{"date": d, "total_revenue": money(per_day[d])} for d in days]


VISIT_VALUES = [("visit:source", "google"), ("visit:source", "Direct / None"), ("visit:country", "DE")]
VISIT_VALUES += [("visit:utm_campaign", "spring"), ("visit:entry_page", "/pricing")]


@pytest.mark.parametrize("goal_names", [("Signup", "Purchase"), tuple(GOAL_NAMES)])
@pytest.mark.parametrize("prop, value", VISIT_VALUES)
@pytest.mark.parametrize("source", ["events", "aggregates"])
def test_the_goals_under_a_visit_property_value(store, traffic, source, prop, value, goal_names):
    """The goals panel under a visit filter (the issue's "goals where source = google"):
    event goals from the goal rows on rolled days; with page goals too, from the events."""
    filters = (Filter(prop, "==", (value,)), Filter("event:goal", "==", goal_names))
    query = StatsQuery(
        SITE, traffic.start, traffic.end, ("visitors", "events"), filters, property="event:goal", source=source
    )
    of, blank = VISIT_PROPERTIES[prop]
    want = {}
    for name in goal_names:
        hits = [
            (v.visitor, e)
            for v in traffic.visits
            if (of(v) or blank) == value
            for e in v.events
            if completes(e, goal_named(name))
        ]
        if hits:
            want[name] = {"visitors": len({who for who, _ in hits}), "events": len(hits)}
    assert want
    assert by_value(queries.breakdown(store, query), "goal") == want
    rolled = make_plan(replace(query, source=None)).describe()["rolled_up_days"]
    assert rolled == f"beacon.stats_pairs: event:goal under {prop}"


@pytest.mark.parametrize(
    "kind, value, currency, refusal",
    [("page", "/thanks", "EUR", "only an event goal carries revenue"), ("event", "Buy", "EURO", "ISO 4217")],
)
def test_a_revenue_goal_is_an_event_goal_with_a_currency_code(store, kind, value, currency, refusal):
    with pytest.raises(ValueError, match=refusal):
        add_goal(store, "other.test", kind, value, currency)
