"""Goal mode in real Chromium: with a goal filter every panel shows conversions,
total conversions and the conversion rate per row (and revenue for a revenue goal),
no column of zeros, each column sortable, the numbers the Stats API's and, for the
sources, the ones worked out here from the traffic."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.browser.dashboard_fixtures import (
    GOAL,
    OTHER_SITE,
    SITE,
    Dashboard,
    events_of,
    insert,
    make_visits,
    period_days,
    wait_for_visits,
)
from tests.browser.test_dashboard import open_dashboard, panel_rows, ready
from tests.server import BeaconServer, cli

__all__ = ["open_dashboard"]  # the fixture, imported for this module

PURCHASE, CURRENCY = "Purchase", "EUR"
PANELS = {
    "pages": "event:page",
    "sources": "visit:source",
    "locations": "visit:country",
    "devices": "visit:device",
    "languages": "visit:language",
    "conversions": "event:goal",
}
GOAL_COLUMNS = ["Conversions", "Total conversions", "Conversion rate"]
REVENUE_COLUMNS = ["Revenue", "Average revenue"]
GOAL_METRICS = ("visitors", "events", "conversion_rate")
REVENUE_METRICS = ("total_revenue", "average_revenue")


def amount_of(n: int) -> Decimal:
    """The n-th purchase's amount: cents that differ from row to row."""
    return Decimal(1999 + 1250 * (n % 7)) / 100


def purchases(rows: list[dict]) -> list[dict]:
    """A purchase (with revenue) after each Signup: same visitor, same visit, 30 s later."""
    bought = []
    for n, row in enumerate(r for r in rows if r["name"] == GOAL):
        later = datetime.fromisoformat(row["ts"]) + timedelta(seconds=30)
        bought.append(
            row
            | {
                "event_id": row["event_id"][:-6] + "999999",
                "name": PURCHASE,
                "ts": later.strftime("%Y-%m-%d %H:%M:%S.000"),
                "revenue_amount": str(amount_of(n)),
                "revenue_currency": CURRENCY,
            }
        )
    return bought


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Dashboard:
    data_dir = tmp_path_factory.mktemp("goals-dashboard") / "data"
    visits = make_visits()
    rows = events_of(visits)
    with BeaconServer(data_dir) as server:
        for site in (SITE, OTHER_SITE):
            cli("sites", "add", site, "--data-dir", str(data_dir))
        cli("goals", "add", SITE, "--event", GOAL, "--data-dir", str(data_dir))
        cli("goals", "add", SITE, "--event", PURCHASE, "--currency", CURRENCY, "--data-dir", str(data_dir))
        insert(data_dir, rows + purchases(rows))
        analyst = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()
        running = Dashboard(server, analyst, visits)
        running.rows = rows + purchases(rows)
        wait_for_visits(running, len(visits))
        yield running


def shown(metric: str, value) -> str:
    """The page's formatting (dashboard/frontend/src/metrics.js) of an API value."""
    if value is None:
        return "—"
    if metric == "conversion_rate":
        return f"{value:.1f}%"
    if metric in REVENUE_METRICS:
        return f"€{value:,.2f}"
    return f"{round(value):,}"


def api_rows(dashboard: Dashboard, prop: str, metrics: tuple[str, ...], shown_as: tuple[str, ...], goal: str):
    r = dashboard.api(
        "breakdown",
        site_id=SITE,
        period="30d",
        property=prop,
        metrics=",".join(metrics),
        limit=10,
        filters=f"event:goal=={goal}",
    )
    assert r.status_code == 200, r.text
    key = prop.split(":")[-1]
    return [(row[key], *(shown(m, row[m]) for m in shown_as)) for row in r.json()["results"]]


def headings(page, panel: str) -> list[str]:
    return [th.get_attribute("title") for th in page.locator(f'[data-panel="{panel}"] table.rows th.num').all()]


@pytest.mark.parametrize(
    "goal, columns, metrics",
    [
        (GOAL, GOAL_COLUMNS, GOAL_METRICS),
        (PURCHASE, GOAL_COLUMNS + REVENUE_COLUMNS, GOAL_METRICS + REVENUE_METRICS),
    ],
)
def test_every_panel_shows_conversions_and_rate_per_row(open_dashboard, dashboard, goal, columns, metrics):
    page = open_dashboard(f"site={SITE}&period=30d&filters=event:goal=={goal}").page
    # The chart draws the goal's converting visitors, and says so (not "Unique visitors").
    assert page.get_attribute(".chart[role=img]", "aria-label").startswith("Unique conversions per day")
    for panel, prop in PANELS.items():
        assert headings(page, panel) == columns, panel
        rows = panel_rows(page, panel)
        assert rows == api_rows(dashboard, prop, metrics, metrics, goal), panel
        for i, _ in enumerate(metrics):
            assert any(row[1 + i] not in ("0", "0.0%", "€0.00") for row in rows), (panel, columns[i])


def test_the_sources_are_the_traffics_own_numbers(open_dashboard, dashboard):
    """Conversions, revenue and CR per source, worked out from the inserted rows."""
    page = open_dashboard(f"site={SITE}&period=30d&filters=event:goal=={PURCHASE}").page
    first, last = period_days("30d")
    within = [r for r in dashboard.rows if first.isoformat() <= r["ts"][:10] <= last.isoformat()]
    source_of = {}
    for r in sorted(within, key=lambda r: r["ts"]):  # a visit's source: its first event's
        source_of.setdefault(r["visitor_id"], r["referrer_source"] or "Direct / None")
    converted, count, revenue, everyone = defaultdict(set), defaultdict(int), defaultdict(Decimal), defaultdict(set)
    for r in within:
        source = source_of[r["visitor_id"]]
        everyone[source].add(r["visitor_id"])
        if r["name"] == PURCHASE:
            converted[source].add(r["visitor_id"])
            count[source] += 1
            revenue[source] += Decimal(r["revenue_amount"])
    want = {}
    for source, who in converted.items():
        rate = (Decimal(100 * len(who)) / len(everyone[source])).quantize(Decimal("0.01"), ROUND_HALF_UP)
        total = revenue[source].quantize(Decimal("0.01"), ROUND_HALF_UP)
        average = (revenue[source] / count[source]).quantize(Decimal("0.01"), ROUND_HALF_UP)
        want[source] = (
            f"{len(who):,}",
            f"{count[source]:,}",
            f"{float(rate):.1f}%",
            f"€{total:,.2f}",
            f"€{average:,.2f}",
        )
    shown_rows = {row[0] or "Direct / None": row[1:] for row in panel_rows(page, "sources")}
    assert shown_rows == want


def test_a_column_heading_sorts_the_rows_by_it(open_dashboard, dashboard):
    page = open_dashboard(f"site={SITE}&period=30d&filters=event:goal=={PURCHASE}").page
    metrics = GOAL_METRICS + REVENUE_METRICS
    page.click('[data-panel="pages"] th button.sort[data-metric="average_revenue"]')
    page.wait_for_function(
        '() => document.querySelector(\'[data-panel="pages"] th[aria-sort="descending"] button\')'
        "?.dataset.metric === 'average_revenue' && document.querySelector('[data-panel=\"pages\"]').dataset.state === 'ready'"
    )
    asked = ("average_revenue",) + tuple(m for m in metrics if m != "average_revenue")
    rows = panel_rows(page, "pages")
    assert rows == api_rows(dashboard, "event:page", asked, metrics, PURCHASE)
    averages = [Decimal(row[5].lstrip("€").replace(",", "")) for row in rows]
    assert averages == sorted(averages, reverse=True) and len(set(averages)) > 1
    ready(page)
