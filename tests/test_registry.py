"""Every metric and property is declared once, in ``queries``: the Stats API accepts
exactly those, the OpenAPI document lists them, and a metric added to the registry
is answered by the API and the read side with nothing else changed."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

import queries
from api import openapi
from api import stats_params as params
from beacon.cli import main
from dashboard.app import PROPERTIES as DASHBOARD_PROPERTIES
from queries.metrics import METRICS, Metric
from queries.model import StatsQuery
from queries.properties import CATALOGUE
from tests.traffic import Oracle, clean, insert, random_traffic

SITE = "a.test"


def _parameter(name: str, route: str = "/api/v1/stats/breakdown") -> dict:
    operation = openapi.document()["paths"][route]["get"]
    return next(p for p in operation["parameters"] if p["name"] == name)


@pytest.mark.parametrize("name", list(METRICS))
def test_the_api_accepts_each_registered_metric_and_documents_it(name):
    assert params.metrics({"metrics": name}) == (name,)
    assert f"`{name}`" in _parameter("metrics")["description"]


def test_the_api_refuses_a_metric_the_registry_lacks():
    with pytest.raises(params.BadParameter, match="not recognized"):
        params.metrics({"metrics": "time_on_site"})


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_api_accepts_each_registered_property_and_documents_it(name):
    assert params.breakdown_property({"property": name}) == name
    assert params.filters({"filters": f"{name}==x"})[0].prop == name
    assert name in _parameter("property")["description"]


@pytest.mark.parametrize("name", ["visit:nope", "event:props:", "event:props:a b", "event:pages"])
def test_the_api_refuses_a_property_the_registry_lacks(name):
    with pytest.raises(params.BadParameter, match="unknown property"):
        params.breakdown_property({"property": name})


@pytest.fixture
def one_day(store):
    clean(store)
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    events = random_traffic(random.Random(5), day, people=20)
    insert(store, events)
    yield Oracle(events), day
    clean(store)


def test_a_new_metric_needs_only_its_definition(store, one_day, monkeypatch):
    """A ratio of two sums the parts already compute: declared in the registry alone,
    it is accepted, documented and answered on both paths (the value is checked
    against the events counted in Python)."""
    oracle, day = one_day
    metric = Metric(
        "events_per_visit",
        "Events per visit",
        "decimal",
        "Events per visit, two decimals.",
        "events",
        "visits",
        digits=2,
        of_visits=True,
    )
    monkeypatch.setitem(METRICS, metric.name, metric)

    assert params.metrics({"metrics": "visitors,events_per_visit"}) == ("visitors", "events_per_visit")
    assert "`events_per_visit`" in _parameter("metrics", "/api/v1/stats/aggregate")["description"]
    q = StatsQuery(SITE, day, day + timedelta(days=1), ("events_per_visit",))
    sums = oracle.sums(StatsQuery(SITE, day, day + timedelta(days=1), ("events", "visits")))[("", "", "")]
    ratio = Fraction(sums["events"], sums["visits"])
    expected = float(Fraction(int(ratio * 100 + Fraction(1, 2)), 100))
    for source in ("aggregates", "events"):
        found = queries.aggregate(store, StatsQuery(**{**q.__dict__, "source": source}))
        assert found == {"events_per_visit": expected}


def test_query_plan_prints_the_planners_decision():
    runner = CliRunner()
    result = runner.invoke(
        main, ["query-plan", "breakdown?site_id=a.test&period=30d&property=visit:source&filters=event:page==/docs"]
    )
    assert result.exit_code == 0, result.output
    assert '"source": "aggregates"' in result.output
    assert '"rolled_up_days": "beacon.stats_pairs: visit:source under event:page"' in result.output
    result = runner.invoke(main, ["query-plan", "timeseries?site_id=a.test&period=day&filters=event:name==Signup"])
    assert result.exit_code == 0, result.output
    assert '"source": "events"' in result.output and "every hour from raw events" in result.output
    refused = runner.invoke(
        main, ["query-plan", "aggregate?site_id=a.test&metrics=views_per_visit&filters=event:page==/"]
    )
    assert refused.exit_code == 1 and "cannot be queried with a filter on event:page" in refused.output


# --- finishing: exact rounding (87 pageviews over 40 visits is 2.175, shown 2.18) ---------------


@pytest.mark.parametrize(
    "metric, sums, expected",
    [
        ("views_per_visit", {"pageviews": 87, "visits": 40}, 2.18),  # 2.175: floats gave 2.17
        ("views_per_visit", {"pageviews": 2, "visits": 3}, 0.67),
        ("bounce_rate", {"bounces": 1, "visits": 8}, 13),  # 12.5
        ("bounce_rate", {"bounces": 0, "visits": 0}, 0),
        ("visit_duration", {"duration": 5, "visits": 2}, 3),  # 2.5
    ],
)
def test_rounded_metrics_round_a_half_up_exactly(metric, sums, expected):
    assert METRICS[metric].value(sums, False, None, "aggregate") == expected


def test_conversion_rate_rounds_a_half_up_exactly():
    # 1 of 8 visitors: 12.5 %; 29 of 40: 72.5 %; 1 of 16: 6.25 %; 7 of 1600: 0.4375 %
    for visitors, base, expected in ((1, 8, 12.5), (29, 40, 72.5), (1, 16, 6.25), (7, 1600, 0.44)):
        assert METRICS["conversion_rate"].value({"visitors": visitors}, False, base, "aggregate") == expected


@pytest.mark.parametrize(
    "metric, now, before, expected",
    [
        ("visitors", 35, 40, -13),  # −12.5: Python's round() gave −12
        ("visitors", 153, 40, 283),  # 282.5: round() gave 282
        ("visitors", 45, 40, 13),  # 12.5
        ("visitors", 3, 0, 100),
        ("visitors", 0, 0, 0),
        ("bounce_rate", 41, 40, 1),
        ("bounce_rate", 41, 0, None),
        ("conversion_rate", 2.25, 2.0, 0.3),  # 0.25 points, a half away from zero
        ("conversion_rate", 2.0, 2.25, -0.3),
        ("views_per_visit", 2.18, 2.0, 9),
    ],
)
def test_change_rounds_a_half_away_from_zero(metric, now, before, expected):
    assert METRICS[metric].changed(now, before) == expected


# --- the dashboard's panels -------------------------------------------------------------------

PANELS_JS = Path(__file__).resolve().parent.parent / "dashboard" / "frontend" / "src" / "panels.js"


def test_every_property_a_dashboard_panel_breaks_down_by_is_registered_with_its_heading():
    """The panels name properties only (view('Sources', 'visit:source', …)); their
    headings and row keys come from the registry, through the session."""
    named = set(re.findall(r"view\('[^']*', '([a-z_]+:[a-z_]+)'", PANELS_JS.read_text()))
    assert named and named <= set(CATALOGUE)
    assert not re.search(r"view\('[^']*', '[^']*', '", PANELS_JS.read_text())  # no heading written beside one
    assert all(CATALOGUE[name].label for name in named)
    assert DASHBOARD_PROPERTIES == {p.name: {"label": p.label, "key": p.key} for p in CATALOGUE.values()}
