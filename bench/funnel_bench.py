"""Funnels, for bench/stats_bench.py ``--funnel NAME`` (issue 25): the funnel of
shop.example over 30 days, 6 and 12 months, with no filter, a source filter and a
page filter, timed

* in the process, on both paths alternated (the raw events; the built visits'
  sequences), checking that they agree;
* through the Stats API (``GET /api/v1/stats/funnel``) of a running server.

On a store made before migration 0025 it first gives the built visits their
sequences (``rollups.sequences``, what the builder does over its first rounds after
the upgrade) and prints how long that took.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from datetime import date, timedelta

from bench.stats_http import Server
from common.zones import start_of
from queries.funnel import funnel
from queries.model import Filter, StatsQuery
from rollups.sequences import sequence_older_visits
from storage.clickhouse import ClickHouseStore
from storage.funnels import Funnel, add_funnel, find_funnel

# Pages are "/" and "/p/N" (N a Zipf rank), events Zipf over bench/stats_traffic.py's NAMES.
STEPS = ["page:/", "page:/p/2", "page:/p/3", "event:Signup", "event:Purchase"]
FILTERS = {"no filter": "", "source=google": "visit:source==google", "page=/": "event:page==/"}
PERIODS = ("30d", "6mo", "12mo")


def ensure_funnel(store: ClickHouseStore, site: str, name: str) -> Funnel:
    """The site's funnel ``name``, made of ``STEPS`` when it has none of that name."""
    return find_funnel(store, site, name) or add_funnel(store, site, name, STEPS)


def sequence_history(store: ClickHouseStore) -> None:
    started, steps = time.perf_counter(), 0
    while sequence_older_visits(store):
        steps += 1
    if steps:
        print(
            f"visits given their sequences (migration 0025's backfill): {steps} weeks in "
            f"{time.perf_counter() - started:.0f} s"
        )


def time_paths(store: ClickHouseStore, chosen: Funnel, today: date, zone: str, runs: int, raw_runs: int) -> None:
    """p50 / p95 of each case on both paths, one run of each in turn (the raw path's
    first ``raw_runs`` times only: it takes seconds)."""
    print(
        f"\n{'funnel ' + chosen.name + ', in the process':40} {'raw events p50 / p95':>24} {'sequences p50 / p95':>24}"
    )
    for period in PERIODS:
        for label, text in FILTERS.items():
            q = _query(chosen.site, period, text, today, zone)
            raw, fast = replace(q, source="events"), replace(q, source=None)
            assert funnel(store, raw, chosen) == replace(funnel(store, fast, chosen), source="events"), "paths differ"
            raw_ms, fast_ms = [], []
            for run in range(runs):
                if run < raw_runs:
                    raw_ms.append(_timed(store, raw, chosen))
                fast_ms.append(_timed(store, fast, chosen))
            print(f"{period + ', ' + label:40} {_p50_p95(raw_ms):>24} {_p50_p95(fast_ms):>24}", flush=True)


def time_http(server: Server, name: str, runs: int) -> None:
    """p50 / p95 of each case through the Stats API (after one warm-up request)."""
    print(f"\n{'funnel ' + name + ', through HTTP (' + server.site + ')':40} {'p50 / p95':>24}")
    with server.client() as http:
        for period in PERIODS:
            for label, text in FILTERS.items():
                params = {"site_id": server.site, "period": period, "funnel": name}
                params |= {"filters": text} if text else {}
                http.get("/funnel", params=params).raise_for_status()
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    answer = http.get("/funnel", params=params)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                source = answer.json()["meta"]["source"]
                print(f"{period + ', ' + label:40} {_p50_p95(times):>24}  ({source})", flush=True)


def _query(site: str, period: str, filters: str, today: date, zone: str) -> StatsQuery:
    """As the API reads ``period`` (30d: the 30 days before today; 6mo, 12mo: whole months to this one's end)."""
    if period == "30d":
        first, last = today - timedelta(days=30), today - timedelta(days=1)
    else:
        months = 6 if period == "6mo" else 12
        index = today.year * 12 + today.month - months
        first = date(index // 12, index % 12 + 1, 1)
        last = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    parsed = tuple(Filter(f.split("==")[0], "==", (f.split("==")[1],)) for f in filters.split(";") if f)
    return StatsQuery(
        site, start_of(first, zone), start_of(last + timedelta(days=1), zone), ("visitors",), parsed, timezone=zone
    )


def _timed(store: ClickHouseStore, q: StatsQuery, chosen: Funnel) -> float:
    started = time.perf_counter()
    funnel(store, q, chosen)
    return (time.perf_counter() - started) * 1000


def _p50_p95(ms: list[float]) -> str:
    if not ms:
        return "-"
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ms):7.1f} / {p95:7.1f} ms"
