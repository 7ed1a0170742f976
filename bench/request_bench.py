#!/usr/bin/env python
"""CPU per request of the collector's Python path, without sockets or kernel.

    python bench/request_bench.py [--requests 20000] [--batch 1]

Feeds pre-built HTTP requests (the load mix of bench/kafka_bench.py: browser UAs,
forwarded IPs, utm parameters, props, consent) into the HTTP server's connection
protocol with a transport that discards what it is given, on uvloop, and reports
CPU µs per request for three stacks, each a layer more of the real one:

  server       HTTP parsing, scope, response encoding; a bare app answers 202
  collector    + CollectorApp: body, validation, client IP, event ids (handoff takes all)
  embedded     + privacy filter and row encoding (``beacon serve``'s FilteringHandoff)

What the numbers leave out is the kernel (socket reads and writes, epoll), the
load generator, the store and, in ``--workers`` mode, shipping rows to the owner:
compare with bench/serve_bench.py's CPU per request to see their share.

    python bench/request_bench.py --instructions [--requests 2000]

counts instructions instead of timing (valgrind's callgrind, ~4 min): the same
figure on every run, whatever else the machine does, so two commits compare
without alternated runs. Each layer runs twice under valgrind, with and without
the measured requests; the difference divided by their number is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop  # noqa: E402
from kafka_bench import raw_http_request, request_mix  # noqa: E402 (bench/ is on sys.path when run as a script)

from collector.app import CollectorApp  # noqa: E402
from collector.client_ip import ClientIPResolver  # noqa: E402
from collector.sites import SiteDirectory  # noqa: E402
from storage.sites import Site  # noqa: E402
from streams import steps  # noqa: E402
from streams.embedded import FILTER_WAIT, FilteringHandoff  # noqa: E402
from streams.geo import GeoLookup  # noqa: E402
from streams.privacy_filter import FilterConfig, FilterEnv  # noqa: E402
from streams.visitor import DailySalts  # noqa: E402
from tests.geoip import write_city_db  # noqa: E402
from web.connection import Connection
from web.server import HTTPServer  # noqa: E402

SITE = "example.com"


class DiscardingRowSink:
    """The owner's buffer without a store: rows kept a while (up to 1,000 chunks), then dropped."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def has_room(self, rows: int) -> bool:
        return True

    def add(self, chunk: bytes, rows: int, arrival: float) -> None:
        self.chunks.append(chunk)
        if len(self.chunks) > 1000:
            self.chunks.clear()

    def ready(self) -> bool:
        return True


class DiscardingTransport:
    """What the connection writes goes nowhere; it reports a loopback peer."""

    def __init__(self) -> None:
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)

    def get_extra_info(self, name: str):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class AcceptAll:
    def submit(self, events) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def durable(self) -> None:
        return None


async def bare_app(scope, receive, send) -> None:
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"14")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"accepted":1}'})


def build_apps(work: Path) -> dict:
    steps.warm_up()
    sites = SiteDirectory(lambda: [Site(SITE, (f"https://{SITE}", f"https://www.{SITE}"))])
    sites.refresh()
    env = FilterEnv(
        geo=GeoLookup(write_city_db(work / "city.mmdb")), config=FilterConfig(), salts=DailySalts(work / "salts")
    )
    trusted = ClientIPResolver(("127.0.0.1/32",))
    embedded = FilteringHandoff(env, DiscardingRowSink())
    return {
        "server": bare_app,
        "collector": CollectorApp(AcceptAll(), sites, trusted),
        "embedded": CollectorApp(embedded, sites, trusted),
    }


async def measure(app, requests: list[bytes]) -> tuple[float, int]:
    """CPU seconds for all requests, one connection each time through (keep-alive)."""
    server = HTTPServer(app, direct=getattr(app, "direct", None))  # as beacon.http.serve does
    server.context.loop = asyncio.get_running_loop()
    connection = Connection(server.context)
    transport = DiscardingTransport()
    connection.connection_made(transport)
    started = time.process_time()
    for raw in requests:
        connection.data_received(raw)
        await asyncio.sleep(0)  # a turn of the loop per request, as when each comes from the socket
        while connection.current is not None:
            await asyncio.sleep(0)
    await asyncio.sleep(3 * FILTER_WAIT)  # the embedded filter's last batch (no CPU while idle)
    return time.process_time() - started, transport.bytes_written


WARM_UP = 200  # requests run before the measured ones (first-call costs, caches)


def count_instructions(args) -> None:
    valgrind = shutil.which("valgrind")
    if not valgrind:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    requests = min(args.requests, 5_000)  # ~50× slower under valgrind
    print(f"instructions per request ({requests} requests of {args.batch} beacon(s), after {WARM_UP} to warm up)")
    previous = 0
    for layer in ("server", "collector", "embedded"):
        counts = []
        for n in (0, requests):
            run = subprocess.run(
                [
                    valgrind,
                    "--tool=callgrind",
                    "--callgrind-out-file=/dev/null",
                    sys.executable,
                    __file__,
                    "--only",
                    layer,
                    "--requests",
                    str(n),
                    "--pool",
                    str(requests),
                    "--batch",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
            )
            found = re.search(r"Collected : (\d+)", run.stderr)
            if run.returncode != 0 or not found:
                sys.exit(f"valgrind run failed:\n{run.stderr[-2000:]}")
            counts.append(int(found.group(1)))
        per_request = (counts[1] - counts[0]) // requests
        print(f"  {layer:10s} {per_request:9,d}   (+{per_request - previous:,d} for this layer)")
        previous = per_request


def run_only(layer: str, args) -> None:
    """One layer, once, untimed: what ``--instructions`` runs under valgrind. Both
    runs build the same requests (``--pool``), so that building them cancels out."""
    rng = random.Random(42)
    requests = [raw_http_request("/collect", SITE, *request_mix(rng, args.batch)) for _ in range(WARM_UP + args.pool)]
    with tempfile.TemporaryDirectory() as tmp:
        app = build_apps(Path(tmp))[layer]
        uvloop.run(measure(app, requests[:WARM_UP]))
        if args.requests:
            uvloop.run(measure(app, requests[WARM_UP : WARM_UP + args.requests]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1, help="beacons per request (default 1)")
    ap.add_argument("--rounds", type=int, default=5, help="repetitions; the median and best are shown (default 5)")
    ap.add_argument("--instructions", action="store_true", help="count instructions with valgrind instead of timing")
    ap.add_argument("--only", choices=("server", "collector", "embedded"), help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.instructions:
        count_instructions(args)
        return
    if args.only:
        run_only(args.only, args)
        return

    rng = random.Random(42)
    requests = [raw_http_request("/collect", SITE, *request_mix(rng, args.batch)) for _ in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        apps = build_apps(Path(tmp))
        results: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):  # interleaved: the machine's speed drifts
            for name, app in apps.items():
                seconds, written = uvloop.run(measure(app, requests))
                assert written > 0
                results[name].append(seconds / args.requests * 1e6)
    print(
        f"CPU µs per request ({args.requests} requests of {args.batch} beacon(s), {args.rounds} rounds: median / best)"
    )
    previous = 0.0
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:10s} {median:7.1f} / {min(samples):7.1f}   (+{median - previous:.1f} for this layer)")
        previous = median


if __name__ == "__main__":
    main()
