"""The Stats API over HTTP, for bench/stats_bench.py: a ``beacon serve`` on the loaded
store, an ``analyst`` token, each dashboard query timed through the API, and the
ingestion rate (wrk, bench/collect.lua) alone and while a client queries the
dashboard's endpoints in a loop.

The bench process must have closed its own store first: chDB lets one process open
a data directory, and here that is the server.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from bench.serve_bench import LUA, beacon_command, free_port, parse_wrk, wait_ready

API = "/api/v1/stats"
DASHBOARD_METRICS = "visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration"


def cases(site: str) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, parameters): what the dashboard asks for, as Plausible's v1 API."""

    def q(period: str, **more: str) -> dict[str, str]:
        return {"site_id": site, "period": period, **more}

    page = {"property": "event:page", "limit": "10", "metrics": "visitors,pageviews"}
    source = {"property": "visit:source", "limit": "10", "metrics": "visitors,bounce_rate,visit_duration"}
    country = {"property": "visit:country", "limit": "10", "metrics": "visitors"}
    return [
        ("aggregate 30d", "/aggregate", q("30d", metrics=DASHBOARD_METRICS)),
        (
            "aggregate 30d, source filter",
            "/aggregate",
            q("30d", metrics=DASHBOARD_METRICS, filters="visit:source==google"),
        ),
        ("timeseries day (hours)", "/timeseries", q("day", metrics="visitors,pageviews")),
        ("timeseries 30d", "/timeseries", q("30d", metrics="visitors,pageviews,bounce_rate")),
        ("timeseries 6mo by day", "/timeseries", q("6mo", metrics="visitors,pageviews", interval="date")),
        ("timeseries 6mo by month", "/timeseries", q("6mo", metrics="visitors,pageviews")),
        ("timeseries 12mo by month", "/timeseries", q("12mo", metrics="visitors,pageviews")),
        ("top 10 pages 30d", "/breakdown", q("30d", **page)),
        ("top 10 sources 30d", "/breakdown", q("30d", **source)),
        ("top 10 countries 30d", "/breakdown", q("30d", **country)),
        ("top 10 pages 30d, source=google", "/breakdown", q("30d", **page, filters="visit:source==google")),
        ("top 10 sources 30d, country=DE", "/breakdown", q("30d", **source, filters="visit:country==DE")),
        ("top 10 countries 30d, page=/", "/breakdown", q("30d", **country, filters="event:page==/")),
        ("realtime", "/realtime/visitors", {"site_id": site}),
    ]


class Server:
    """``beacon serve`` on ``data_dir``, with ``site`` registered and an analyst token."""

    def __init__(self, data_dir: Path, site: str):
        self.beacon = beacon_command()
        self.data_dir, self.site = data_dir, site
        self.base = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None
        self.token = ""

    def __enter__(self) -> Server:
        subprocess.run(
            [self.beacon, "sites", "add", "--data-dir", str(self.data_dir), self.site],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log = open(self.data_dir / "bench-serve.log", "wb")
        self.process = subprocess.Popen(
            [
                self.beacon,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                self.base.rsplit(":", 1)[1],
                "--trusted-proxy",
                "127.0.0.1/32",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(self.base, self.process, timeout=300)
        self.token = subprocess.run(
            [
                self.beacon,
                "tokens",
                "create",
                "--data-dir",
                str(self.data_dir),
                "--role",
                "analyst",
                "--site",
                self.site,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return self

    def __exit__(self, *exc) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(120)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base + API, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


def time_queries(server: Server, runs: int) -> None:
    """p50 / p95 of each case through HTTP, after one warm-up request."""
    print(f"\n{'through HTTP (' + server.site + ')':40} {'p50 / p95':>22}   bytes")
    with server.client() as http:
        for name, path, params in cases(server.site):
            answer = http.get(path, params=params)
            answer.raise_for_status()
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                http.get(path, params=params).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            print(f"{name:40} {_fmt(times):>22}   {len(answer.content):,}")


def ingestion_under_queries(server: Server, seconds: int, rounds: int) -> None:
    """Accepted beacons/s (wrk, 12 connections, one beacon a request) alone and while
    one client asks the dashboard's queries in a loop, alternated ``rounds`` times."""
    alone, loaded, asked = [], [], []
    for _ in range(rounds):
        alone.append(wrk_rate(server, seconds))
        loop = _QueryLoop(server)
        loop.start()
        loaded.append(wrk_rate(server, seconds))
        asked.append(loop.stop() / seconds)
    a, b = statistics.median(alone), statistics.median(loaded)
    print(
        f"\ningestion (wrk -c12, {seconds} s runs): {a:,.0f} beacons/s alone, {b:,.0f} while a client queries "
        f"the dashboard in a loop ({statistics.median(asked):.1f} queries/s): {b / a:.2f}×"
    )


def wrk_rate(server: Server, seconds: int) -> float:
    """Beacons/s the server accepted under ``wrk -c12`` for ``seconds`` (503s, a full
    buffer, are said and left out; any other answer than 202 or 503 is an error)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c12",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            server.base + "/collect",
            "--",
            f"site={server.site}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = parse_wrk(out)
    if figures["non202"] != figures["s503"]:
        raise RuntimeError(f"wrk got {figures['non202'] - figures['s503']} answers other than 202 and 503")
    if figures["s503"]:
        print(f"  ({figures['s503']:,} of {figures['requests']:,} requests answered 503: the buffer was full)")
    return (figures["requests"] - figures["non202"]) / (figures["duration_us"] / 1e6)  # accepted beacons only


class _QueryLoop(threading.Thread):
    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server, self.count = server, 0
        self._halt = threading.Event()

    def run(self) -> None:
        with self.server.client() as http:
            while not self._halt.is_set():
                for _, path, params in cases(self.server.site):
                    http.get(path, params=params).raise_for_status()
                    self.count += 1

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.count


def _fmt(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.1f} / {p95:7.1f} ms"
