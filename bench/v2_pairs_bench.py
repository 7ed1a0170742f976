#!/usr/bin/env python
"""Two dimensions of the Stats API v2 in one engine run (``queries.grouped.pairs``)
against one run per value of the first (the way before it), alternated run by run.

    python bench/v2_pairs_bench.py                  # 1M events over 30 days
    python bench/v2_pairs_bench.py --runs 9

Traffic: bench/stats_traffic.py (as bench/stats_bench.py), visits built. Figures for
shop.example over the last 30 whole days (the aggregates path) and over the same days
cut to the second (the raw events), p50 of ``--runs`` after a warm-up.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stats_bench import SITE, load  # noqa: E402
from queries import grouped as grouping  # noqa: E402
from queries.model import QueryError, StatsQuery  # noqa: E402
from rollups.visit_builder import build_closed_visits  # noqa: E402
from storage.clickhouse import ClickHouseStore, dsn_for_data_dir  # noqa: E402
from storage.migrations import migrate  # noqa: E402
from storage.sites import add_site  # noqa: E402

PAIRS = (
    (("visit:source", "event:page"), ("visitors", "pageviews", "events")),
    (("visit:source", "visit:country"), ("visitors", "visits", "bounce_rate")),
    (("event:page", "visit:country"), ("visitors", "pageviews")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="v2-pairs-bench-"))
    store = ClickHouseStore(dsn_for_data_dir(data_dir))
    try:
        migrate(store)
        add_site(store, SITE)
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        load(store, args.events, args.days, now)
        build_closed_visits(store, now)
        end = now.replace(hour=0)
        for label, lo, hi in (
            ("whole days", end - timedelta(days=args.days), end),
            ("cut to the second", end - timedelta(days=args.days) + timedelta(seconds=30), end),
        ):
            for props, metrics in PAIRS:
                q = StatsQuery(SITE, lo, hi, metrics)
                print(f"{label:18} {' × '.join(props):32} {_compared(store, q, props, args.runs)}", flush=True)
    finally:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _compared(store: ClickHouseStore, q: StatsQuery, props: tuple[str, ...], runs: int) -> str:
    try:
        one, looped, groups = _alternated(store, q, props, runs)
    except QueryError as exc:  # the loop refuses more than MAX_RUNS runs: time the one run alone
        one = statistics.median(_timed(lambda: grouping.grouped(store, q, props))()[0] for _ in range(runs + 1))
        return f"one run {one:7.0f} ms; a run per value refused ({exc})"
    return f"{groups:5} groups: one run {one:7.0f} ms, a run per value {looped:7.0f} ms ({looped / one:.1f}×)"


def _alternated(store: ClickHouseStore, q: StatsQuery, props: tuple[str, ...], runs: int) -> tuple[float, float, int]:
    """p50 ms of the one-run answer and of the per-value loop, alternated; both give the same groups."""
    paired = grouping.pairs
    one_run = _timed(lambda: grouping.grouped(store, q, props))
    # The loop, as it ran before pairs: the same module with pairs switched off.
    per_value = _timed(lambda: _without_pairs(lambda: grouping.grouped(store, q, props), paired))
    first, second = one_run(), per_value()  # the warm-up, and the check
    if sorted(_keyed(first[1])) != sorted(_keyed(second[1])):
        raise SystemExit(f"{props}: the two ways differ")
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        times[0].append(one_run()[0])
        times[1].append(per_value()[0])
    return statistics.median(times[0]), statistics.median(times[1]), len(first[1].groups)


def _timed(ask: Callable[[], grouping.Grouping]) -> Callable[[], tuple[float, grouping.Grouping]]:
    def run() -> tuple[float, grouping.Grouping]:
        started = time.perf_counter()
        found = ask()
        return (time.perf_counter() - started) * 1000, found

    return run


def _without_pairs(ask: Callable[[], grouping.Grouping], paired: Callable) -> grouping.Grouping:
    grouping.pairs = lambda q, props: False
    try:
        return ask()
    finally:
        grouping.pairs = paired


def _keyed(found: grouping.Grouping) -> list[tuple]:
    return [(g.bucket, g.values, tuple(sorted(g.sums.items()))) for g in found.groups]


if __name__ == "__main__":
    main()
