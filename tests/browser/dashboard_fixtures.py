"""Known traffic for the dashboard's browser tests, and a ``beacon serve`` holding it.

The events are made here (seeded, so the same every run) with past timestamps and
inserted straight into the store through the server's control socket (the seam the
CLI uses), as ``beacon query "INSERT …"`` would. What the page must show is worked
out here from the same events: visitors, visits, pageviews per period and filter.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson
import pytest

from storage.control import RemoteStore, socket_path
from tests.server import BeaconServer, cli

SITE, OTHER_SITE = "dash.example", "blog.example"
PAGES = ("/", "/pricing", "/docs", "/blog/launch", "/about", "/docs/install")
SOURCES = ("", "Google", "Twitter", "Hacker News")
COUNTRIES = (("DE", "Berlin"), ("FR", "Paris"), ("US", "New York"), ("GB", "London"), ("JP", "Tokyo"))
LANGUAGES = ("en-US", "de-DE", "fr-FR")
DEVICES = (("desktop", "Chrome", "Linux"), ("desktop", "Firefox", "Windows"), ("mobile", "Safari", "iOS"))
GOAL = "Signup"


@dataclass(frozen=True)
class Visit:
    visitor: int  # the visitor hash: a person's changes every day (the salt of the day)
    start: datetime
    pages: tuple[str, ...]
    source: str
    country: tuple[str, str]
    device: tuple[str, str, str]
    language: str
    signup: bool


def today() -> date:
    return datetime.now(timezone.utc).date()


def make_visits(seed: int = 14, visitors: int = 90) -> list[Visit]:
    """Visits on the 45 days before today (never today: every visit is closed). A
    person comes back on another day, with that day's visitor hash as the store
    would have it; within a visit, a page every 1-4 minutes."""
    rng = random.Random(seed)
    visits = []
    for visitor in range(1, visitors + 1):
        days = rng.sample(range(1, 46), rng.choice((1, 1, 2)))
        for back in days:
            start = datetime.combine(today() - timedelta(days=back), datetime.min.time(), timezone.utc)
            start += timedelta(hours=rng.randrange(6, 21), minutes=rng.randrange(60))
            weights = [6, 3, 2, 2, 1, 1]
            pages = tuple(rng.choices(PAGES, weights)[0] for _ in range(rng.choice((1, 1, 2, 3, 4))))
            visits.append(
                Visit(
                    visitor * 100 + back,
                    start,
                    pages,
                    rng.choices(SOURCES, [5, 4, 2, 1])[0],
                    rng.choices(COUNTRIES, [4, 3, 3, 2, 1])[0],
                    rng.choice(DEVICES),
                    rng.choice(LANGUAGES),
                    rng.random() < 0.2,
                )
            )
    return visits


def events_of(visits: list[Visit], site: str = SITE) -> list[dict]:
    rows = []
    for n, visit in enumerate(visits):
        ts = visit.start
        steps = [("pageview", "", page) for page in visit.pages] + (
            [("event", GOAL, visit.pages[-1])] if visit.signup else []
        )
        for i, (kind, name, page) in enumerate(steps):
            rows.append(
                {
                    "event_id": f"00000000-0000-4000-8000-{n:06d}{i:06d}",
                    "site": site,
                    "type": kind,
                    "name": name,
                    "ts": ts.strftime("%Y-%m-%d %H:%M:%S.000"),
                    "hostname": site,
                    "path": page,
                    "url": f"https://{site}{page}",
                    "referrer_source": visit.source if i == 0 else "",
                    "referrer": f"https://{visit.source.lower().replace(' ', '')}.com/"
                    if visit.source and i == 0
                    else "",
                    "country_code": visit.country[0],
                    "city": visit.country[1],
                    "device_class": visit.device[0],
                    "browser": visit.device[1],
                    "os": visit.device[2],
                    "language": visit.language,
                    "visitor_id": visit.visitor,
                }
            )
            if kind == "pageview" and (n + i) % 3:  # most page views end with an engagement
                rows.append(_engagement(rows[-1], n, i))
            ts += timedelta(minutes=1 + (n + i) % 4)
    return rows


def _engagement(pageview: dict, n: int, i: int) -> dict:
    """The engagement event that ends a page view, 30 s later (not counted: it changes no
    visit, only time on page and scroll depth)."""
    at = datetime.strptime(pageview["ts"], "%Y-%m-%d %H:%M:%S.000") + timedelta(seconds=30)
    return pageview | {
        "event_id": f"00000000-0000-4000-9000-{n:06d}{i:06d}",
        "type": "event",
        "name": "engagement",
        "ts": at.strftime("%Y-%m-%d %H:%M:%S.000"),
        "referrer_source": "",
        "referrer": "",
        "props": {"engaged_ms": str(1000 * (5 + (n * 7 + i) % 170)), "scroll_depth": str((n * 13 + i * 29) % 101)},
    }


# --- what the page must show, worked out from the visits ---------------------------------


def period_days(period: str, anchor: date | None = None) -> tuple[date, date]:
    """The first and last day of a period, as the Stats API defines them (the docs of
    api/stats_params.py), for the periods these tests use."""
    anchor = anchor or today()
    if period == "7d":
        return anchor - timedelta(days=7), anchor - timedelta(days=1)
    if period == "30d":
        return anchor - timedelta(days=30), anchor - timedelta(days=1)
    raise ValueError(period)


def expected(visits: list[Visit], first: date, last: date, page: str | None = None) -> dict[str, int]:
    """Visitors, visits and pageviews of the days first..last; with ``page``, of the
    visits that saw that page (a visit filter on a page keeps the visit's pageviews of
    that page only, as Plausible counts an event:page filter)."""
    chosen = [v for v in visits if first <= v.start.date() <= last and (page is None or page in v.pages)]
    return {
        "visitors": len({v.visitor for v in chosen}),
        "visits": len(chosen),
        "pageviews": sum(sum(p == page for p in v.pages) if page else len(v.pages) for v in chosen),
    }


# --- the server ---------------------------------------------------------------------


@dataclass
class Dashboard:
    server: BeaconServer
    analyst: str  # a token for every site
    visits: list[Visit]

    @property
    def url(self) -> str:
        return f"{self.server.url}/dashboard"

    def api(self, kind: str, **params) -> httpx.Response:
        return httpx.get(
            f"{self.server.url}/api/v1/stats/{kind}",
            params=params,
            headers={"Authorization": f"Bearer {self.analyst}"},
            timeout=30,
        )


def insert(data_dir: Path, rows: list[dict]) -> None:
    """One INSERT: the visit builder never sees a part of the traffic as all of it."""
    store = RemoteStore(socket_path(data_dir))
    try:
        store.command("INSERT INTO beacon.events FORMAT JSONEachRow\n" + b"\n".join(map(orjson.dumps, rows)).decode())
    finally:
        store.close()


def wait_for_visits(dashboard: Dashboard, count: int, timeout: float = 60) -> None:
    """Past events become visits in the background (the visit builder); poll until all are."""
    first, last = min(v.start.date() for v in dashboard.visits), today() - timedelta(days=1)
    deadline = time.monotonic() + timeout
    while True:
        r = dashboard.api("aggregate", site_id=SITE, period="custom", date=f"{first},{last}", metrics="visits")
        if r.status_code == 200 and r.json()["results"]["visits"]["value"] == count:
            return
        assert time.monotonic() < deadline, f"visits not built in {timeout}s: {r.status_code} {r.text}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Dashboard:
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    visits = make_visits()
    with BeaconServer(data_dir) as server:
        for site in (SITE, OTHER_SITE):
            cli("sites", "add", site, "--data-dir", str(data_dir))
        cli("goals", "add", SITE, "--event", GOAL, "--data-dir", str(data_dir))
        insert(data_dir, events_of(visits) + events_of(make_visits(seed=3, visitors=10), OTHER_SITE))
        analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
        running = Dashboard(server, analyst, visits)
        wait_for_visits(running, len(visits))
        yield running
