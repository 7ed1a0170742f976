#!/usr/bin/env python
"""The read side's benchmark: synthetic traffic loaded straight into a chDB store,
visits built for its history, then each query kind timed on both paths.

    python bench/stats_bench.py                       # 10M events over 180 days
    python bench/stats_bench.py --events 100000000    # 100M (≈ 25 GB of disk, an hour)
    python bench/stats_bench.py --data-dir D --reuse  # query a store loaded before
    python bench/stats_bench.py --timezone America/Toronto   # shop.example's days cut in Toronto
    python bench/stats_bench.py --data-dir D --reuse --http-runs 0 --matrix   # the dashboard matrix only
    python bench/stats_bench.py --data-dir D --reuse --matrix --funnel Checkout  # and a funnel
    python bench/stats_bench.py --data-dir D --reuse --funnel Checkout   # the funnel alone (bench/funnel_bench.py)

Traffic: bench/stats_traffic.py (3 sites, 60/30/10 %; Zipf pages, sources,
countries; returning visitors; several events per visit), made inside ClickHouse.
Figures are for the largest site (shop.example, 60 % of the events): first through
the ``queries`` functions (no HTTP) on both paths, p50 / p95 over ``--runs`` runs
(``--raw-runs`` on the raw path), after one warm-up run; then through the Stats API
of a ``beacon serve`` on the same store (bench/stats_http.py), and the ingestion
rate of that server alone and while a client queries the dashboard in a loop. Also
printed: load and build times, the ingestion rate with and without the materialized
view, and ``visitors`` from the aggregates against uniqExact on the raw rows.
``--matrix``: every dashboard panel × filter × period through HTTP, worst first
(bench/stats_matrix.py); shop.example has the goal Signup for it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import queries  # noqa: E402
from bench import funnel_bench, stats_http, stats_matrix  # noqa: E402
from bench.stats_traffic import EVENTS_PER_VISIT, SITES, generation_sql  # noqa: E402
from common.zones import local_date, start_of  # noqa: E402
from queries.model import Filter, StatsQuery  # noqa: E402
from rollups.visit_builder import build_closed_visits  # noqa: E402
from storage.clickhouse import ClickHouseStore, dsn_for_data_dir  # noqa: E402
from storage.funnels import Funnel  # noqa: E402
from storage.goals import add_goal  # noqa: E402
from storage.migrations import migrate  # noqa: E402
from storage.sites import add_site  # noqa: E402

SITE = SITES[0][0]
PAGES = 2000
VISITS_PER_INSERT = 2_000_000
DASHBOARD = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
GOALS = ("Signup", "Purchase")
GOAL_MODE = ("visitors", "events", "conversion_rate")


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="stats-bench-"))
    store = ClickHouseStore(dsn_for_data_dir(data_dir))
    migrate(store)
    add_site(store, SITE, timezone_name=args.timezone)  # before the builder: it cuts the site's days in its zone
    for goal in GOALS:  # Signup: the goal filter of the dashboard matrix (adding one again changes nothing)
        add_goal(store, SITE, "event", goal)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    if not args.reuse:
        load(store, args.events, args.days, now, args.timezone)
        ingestion_rates(store)
        built = time.perf_counter()
        visits = build_closed_visits(store, now)
        print(f"visits built: {visits:,} in {time.perf_counter() - built:.0f} s (windows and daily roll-ups)")
    else:
        ((last,),) = store.rows("SELECT max(ts) FROM beacon.events")
        now = last.replace(tzinfo=timezone.utc, second=0, microsecond=0) + timedelta(minutes=1)
    funnel_bench.sequence_history(store)  # a store made before migration 0025: its visits' sequences
    sizes(store)
    today = local_date(now, args.timezone)
    chosen = funnel_bench.ensure_funnel(store, SITE, args.funnel) if args.funnel else None
    if chosen and not args.matrix:
        time_funnel(store, data_dir, chosen, today, args)
    else:
        time_everything(store, data_dir, today, args)
    if not args.data_dir and not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)


def time_everything(store: ClickHouseStore, data_dir: Path, today: date, args: argparse.Namespace) -> None:
    """Each query kind on both paths in the process, then through HTTP (and the matrix)."""
    timings(store, cases(today, args.timezone), args.runs, args.raw_runs)
    accuracy(store, today, args.timezone)
    store.close()  # the server opens the store now (one chDB per data directory)
    if args.http_runs or args.matrix:
        with stats_http.Server(data_dir, SITE) as server:
            if args.http_runs:
                stats_http.time_queries(server, args.http_runs)
            if args.matrix:
                stats_matrix.time_matrix(server, args.matrix_runs, args.funnel)
            if args.http_runs and args.ingest_seconds:
                stats_http.ingestion_under_queries(server, args.ingest_seconds, args.ingest_rounds)


def time_funnel(store: ClickHouseStore, data_dir: Path, chosen: Funnel, today: date, args: argparse.Namespace) -> None:
    """``--funnel`` without ``--matrix``: the funnel alone, both paths in the process, then through HTTP."""
    funnel_bench.time_paths(store, chosen, today, args.timezone, args.runs, args.raw_runs)
    store.close()  # the server opens the store now (one chDB per data directory)
    if args.http_runs:
        with stats_http.Server(data_dir, SITE) as server:
            funnel_bench.time_http(server, chosen.name, args.http_runs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--raw-runs", type=int, default=5, help="runs of each query on the raw path (0: none)")
    parser.add_argument("--http-runs", type=int, default=20, help="runs of each query through HTTP (0: none)")
    parser.add_argument(
        "--ingest-seconds",
        type=int,
        default=15,
        help="wrk run length for ingestion alone vs. under dashboard queries (0: skip)",
    )
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--data-dir", help="store directory (default: a temporary one, removed at the end)")
    parser.add_argument("--reuse", action="store_true", help="query the store in --data-dir as it is")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument("--timezone", default="UTC", help="shop.example's time zone (an IANA name)")
    parser.add_argument("--matrix", action="store_true", help="time the dashboard matrix through HTTP")
    parser.add_argument("--matrix-runs", type=int, default=7, help="runs of each matrix query")
    parser.add_argument(
        "--funnel",
        metavar="NAME",
        help="time this funnel of shop.example (made of bench/funnel_bench.py's 5 steps if missing): alone, on "
        "both paths and through HTTP; with --matrix, GET /api/v1/stats/funnel among the matrix's queries",
    )
    return parser.parse_args()


# --- loading ---------------------------------------------------------------------------


def load(store: ClickHouseStore, events: int, days: int, now: datetime, zone: str = "UTC") -> None:
    started = time.perf_counter()
    visits = int(events / EVENTS_PER_VISIT)
    for first in range(0, visits, VISITS_PER_INSERT):
        store.command(generation_sql(min(VISITS_PER_INSERT, visits - first), days, now, PAGES, first, zone))
    loaded = time.perf_counter() - started
    store.command("OPTIMIZE TABLE beacon.events FINAL")
    ((rows,),) = store.rows("SELECT count() FROM beacon.events")
    print(f"loaded {rows:,} events in {loaded:.0f} s, merged in {time.perf_counter() - started - loaded:.0f} s")


def ingestion_rates(store: ClickHouseStore) -> None:
    """Rows/s of 10,000-row JSONEachRow inserts (the sink's), with the materialized view
    on events and without it, alternated; the copies inserted are removed after."""
    payload = store.raw_query(
        "SELECT * REPLACE (generateUUIDv4() AS event_id, 'bench-copy' AS batch_id) FROM beacon.events LIMIT 10000",
        "JSONEachRow",
    )
    rates: dict[str, list[float]] = {"with the view": [], "without": []}
    for _ in range(3):
        for name, rate in rates.items():
            if name == "without":
                store.command("DETACH TABLE beacon.events_hourly_mv")
            started = time.perf_counter()
            for _ in range(20):
                store.insert_json_rows("beacon.events", payload)
            rate.append(20 * 10_000 / (time.perf_counter() - started))
            if name == "without":
                store.command("ATTACH TABLE beacon.events_hourly_mv")
    with_view, without = (statistics.median(r) for r in rates.values())
    print(f"ingestion: {with_view:,.0f} rows/s with the view, {without:,.0f} without ({with_view / without:.2f}×)")
    store.command("DELETE FROM beacon.events WHERE batch_id = 'bench-copy'")
    store.command("TRUNCATE TABLE beacon.events_hourly")
    store.command(
        "INSERT INTO beacon.events_hourly SELECT site, toStartOfHour(ts), countIf(type = 'pageview'), "
        "count(), uniqCombinedState(14)(if(visitor_id = 0, cityHash64(event_id), visitor_id)) "
        "FROM beacon.events WHERE NOT (type = 'event' AND name = 'engagement') GROUP BY ALL"
    )


def sizes(store: ClickHouseStore) -> None:
    for table, rows, size in store.rows(
        "SELECT table, sum(rows), formatReadableSize(sum(bytes_on_disk)) FROM system.parts "
        "WHERE database = 'beacon' AND active AND table IN ('events', 'visits', 'events_hourly', 'stats_daily') "
        "GROUP BY table ORDER BY table"
    ):
        print(f"  {table:14} {rows:>13,} rows {size:>10}")


# --- timing ------------------------------------------------------------------------------


def cases(today: date, zone: str) -> list[tuple[str, object, StatsQuery]]:
    def days(first: date, last: date) -> tuple[datetime, datetime]:
        return start_of(first, zone), start_of(last + timedelta(days=1), zone)

    def months_back(n: int) -> date:
        index = today.year * 12 + today.month - 1 - n
        return date(index // 12, index % 12 + 1, 1)

    month_end = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    d30 = days(today - timedelta(days=30), today - timedelta(days=1))
    mo6, mo12, day = days(months_back(5), month_end), days(months_back(11), month_end), days(today, today)

    def q(span, metrics, **more) -> StatsQuery:
        return StatsQuery(SITE, span[0], span[1], metrics, timezone=zone, **more)

    by = {
        "google": (Filter("visit:source", "==", ("google",)),),
        "DE": (Filter("visit:country", "==", ("DE",)),),
        "home": (Filter("event:page", "==", ("/",)),),
        "signup": (Filter("event:goal", "==", ("Signup",)),),
    }
    goal_mode = [
        (
            f"Signup by {prop.split(':')[1]} {label}",
            queries.breakdown,
            q(span, GOAL_MODE, property=prop, limit=10, filters=by["signup"]),
        )
        for prop in ("visit:source", "visit:country", "visit:entry_page", "event:page")
        for label, span in (("30d", d30), ("6mo", mo6))
    ]
    return [
        ("aggregate 30d", queries.aggregate, q(d30, DASHBOARD)),
        ("aggregate 30d, source filter", queries.aggregate, q(d30, DASHBOARD, filters=by["google"])),
        ("timeseries day (hours)", queries.timeseries, q(day, ("visitors", "pageviews"), interval="hour")),
        ("timeseries 30d", queries.timeseries, q(d30, ("visitors", "pageviews", "bounce_rate"), interval="date")),
        ("timeseries 6mo by day", queries.timeseries, q(mo6, ("visitors", "pageviews"), interval="date")),
        ("timeseries 6mo by month", queries.timeseries, q(mo6, ("visitors", "pageviews"), interval="month")),
        ("timeseries 12mo by month", queries.timeseries, q(mo12, ("visitors", "pageviews"), interval="month")),
        ("top 10 pages 30d", queries.breakdown, q(d30, ("visitors", "pageviews"), property="event:page", limit=10)),
        (
            "top 10 sources 30d",
            queries.breakdown,
            q(d30, ("visitors", "bounce_rate", "visit_duration"), property="visit:source", limit=10),
        ),
        ("top 10 countries 30d", queries.breakdown, q(d30, ("visitors",), property="visit:country", limit=10)),
        (
            "top 10 pages 30d, source=google",
            queries.breakdown,
            q(d30, ("visitors", "pageviews"), property="event:page", limit=10, filters=by["google"]),
        ),
        (
            "top 10 sources 30d, country=DE",
            queries.breakdown,
            q(d30, ("visitors", "bounce_rate", "visit_duration"), property="visit:source", limit=10, filters=by["DE"]),
        ),
        (
            "top 10 countries 30d, page=/",
            queries.breakdown,
            q(d30, ("visitors",), property="visit:country", limit=10, filters=by["home"]),
        ),
        *goal_mode,
        (
            "Signup by plan prop 30d",
            queries.breakdown,
            q(d30, GOAL_MODE, property="event:props:plan", limit=10, filters=by["signup"]),
        ),
        (
            "goals 30d, source=google",
            queries.breakdown,
            q(d30, ("visitors", "events"), property="event:goal", limit=10, filters=by["google"]),
        ),
        ("realtime", "realtime", None),
    ]


def timings(store: ClickHouseStore, listed, runs: int, raw_runs: int) -> None:
    print(f"\n{'query (' + SITE + ')':40} {'aggregates p50 / p95':>22} {'raw events p50 / p95':>22}   planner")
    for name, kind, query in listed:
        if kind == "realtime":
            ((last,),) = store.rows("SELECT max(ts) FROM beacon.events WHERE site = {s:String}", {"s": SITE})
            moment = last.replace(tzinfo=timezone.utc)
            agg = _times(lambda moment=moment: queries.realtime_visitors(store, SITE, moment), runs)
            print(f"{name:40} {_fmt(agg):>22} {'(raw events)':>22}")
            continue
        agg = _times(lambda kind=kind, query=query: kind(store, replace(query, source="aggregates")), runs)
        raw = (
            _times(lambda kind=kind, query=query: kind(store, replace(query, source="events")), raw_runs)
            if raw_runs
            else []
        )
        print(f"{name:40} {_fmt(agg):>22} {_fmt(raw) if raw else '(not run)':>22}   {queries.plan(query)}")


def _times(call, runs: int) -> list[float]:
    call()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _fmt(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.1f} / {p95:7.1f} ms"


def accuracy(store: ClickHouseStore, today: date, zone: str) -> None:
    """``visitors`` from the aggregates against uniqExact of the raw rows (over the
    site's local days: its visitor ids are salted per local day)."""
    print()
    for days in (1, 30, 180):
        start = start_of(today - timedelta(days=days), zone)
        end = start_of(today + timedelta(days=1), zone)
        q = StatsQuery(SITE, start, end, ("visitors",), timezone=zone)
        found = queries.aggregate(store, replace(q, source="aggregates"))["visitors"]
        ((exact,),) = store.rows(
            "SELECT uniqExact(if(visitor_id = 0, cityHash64(event_id), visitor_id)) FROM beacon.events "
            "WHERE site = {s:String} AND ts >= {a:DateTime64(3)} AND ts < {b:DateTime64(3)} "
            "AND NOT (type = 'event' AND name = 'engagement')",
            {"s": SITE, "a": start.replace(tzinfo=None), "b": end.replace(tzinfo=None)},
        )
        print(
            f"visitors, last {days:3} days and today: aggregates {found:,}, uniqExact {exact:,} "
            f"({100 * (found - exact) / exact:+.2f} %)"
        )


if __name__ == "__main__":
    main()
