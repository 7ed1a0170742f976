"""The dashboard matrix, for bench/stats_bench.py ``--matrix`` (issue 25): every
panel's breakdown, as the dashboard asks it, under each filter the issue names and
over each period, through the Stats API of a running server (bench/stats_http.py);
p50 / p95 of each, printed worst first.

Filters: none, the goal ``Signup`` (configured by stats_bench; the panels then ask
for conversions: visitors, events, conversion rate), the top source (``google``),
the home page. Periods: 30d, 6mo, 12mo.

The funnel hook: ``--funnel NAME`` adds ``GET /api/v1/stats/funnel`` of that funnel
under the same filters and periods. The endpoint is built elsewhere (issue 25's
funnels); without ``--funnel`` those queries are not asked at all.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench.stats_http import Server

PERIODS = ("30d", "6mo", "12mo")
FILTERS = {
    "no filter": "",
    "goal=Signup": "event:goal==Signup",
    "source=google": "visit:source==google",
    "page=/": "event:page==/",
}
GOAL_METRICS = "visitors,events,conversion_rate"  # goal mode: conversions, total conversions, CR
ENGAGEMENT = "time_on_page,scroll_depth"  # the Pages panel's, with no filter or a page filter only
# (panel, property, metrics without a goal filter), as dashboard/frontend/src/panels.js asks them.
PANELS = (
    ("sources", "visit:source", "visitors"),
    ("pages", "event:page", "visitors,pageviews"),
    ("entry pages", "visit:entry_page", "visitors,visits"),
    ("exit pages", "visit:exit_page", "visitors,visits"),
    ("countries", "visit:country", "visitors"),
    ("devices", "visit:device", "visitors"),
    ("browsers", "visit:browser", "visitors"),
    ("os", "visit:os", "visitors"),
    ("goals", "event:goal", GOAL_METRICS),
)
LIMIT = "10"  # a panel's rows


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    params: dict[str, str]


def cases(site: str, funnel: str | None = None) -> list[Case]:
    """Every panel × filter × period, and the funnel's when one is named."""
    found = []
    for period in PERIODS:
        for filter_name, filters in FILTERS.items():
            where = {"filters": filters} if filters else {}
            for panel, prop, metrics in PANELS:
                params = {"site_id": site, "period": period, "property": prop, "limit": LIMIT, **where}
                params["metrics"] = _metrics(prop, metrics, filter_name)
                found.append(Case(f"{panel}, {filter_name}, {period}", "/breakdown", params))
            if funnel:  # the funnel hook (see the module's docstring)
                params = {"site_id": site, "period": period, "funnel": funnel, **where}
                found.append(Case(f"funnel {funnel}, {filter_name}, {period}", "/funnel", params))
    return found


def _metrics(prop: str, metrics: str, filter_name: str) -> str:
    if filter_name.startswith("goal="):
        return GOAL_METRICS
    if prop == "event:page" and filter_name in ("no filter", "page=/"):
        return f"{metrics},{ENGAGEMENT}"
    return metrics


def time_matrix(server: Server, runs: int, funnel: str | None = None) -> None:
    """p50 / p95 of each case through HTTP (after one warm-up request), worst p95 first."""
    timed, refused = [], []
    with server.client() as http:
        for case in cases(server.site, funnel):
            first = http.get(case.path, params=case.params)
            if first.status_code in (400, 404):  # refused, or no such endpoint or funnel: said, not timed
                refused.append(f"{case.name}: {first.status_code} {first.text[:120]}")
                continue
            first.raise_for_status()
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                http.get(case.path, params=case.params).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            timed.append((case, _p95(times), statistics.median(times)))
    timed.sort(key=lambda t: -t[1])
    print(f"\n{'dashboard matrix, through HTTP (' + server.site + ')':52} {'p50 / p95':>22}")
    for case, p95, p50 in timed:
        print(f"{case.name:52} {p50:7.1f} / {p95:7.1f} ms")
    for limit in (50, 100):
        over = sum(p95 > limit for _, p95, _ in timed)
        print(f"  {over} of {len(timed)} queries over {limit} ms at p95")
    for line in refused:
        print(f"  not timed: {line}")


def _p95(ms: list[float]) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
