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
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop  # noqa: E402

from kafka_bench import raw_http_request, request_mix  # noqa: E402 (bench/ is on sys.path when run as a script)
from collector.app import CollectorApp  # noqa: E402
from collector.client_ip import ClientIPResolver  # noqa: E402
from collector.http_server import Connection, HTTPServer  # noqa: E402
from collector.sites import SiteDirectory  # noqa: E402
from storage.sites import Site  # noqa: E402
from streams import steps  # noqa: E402
from streams.embedded import FilteringHandoff  # noqa: E402
from streams.geo import GeoLookup  # noqa: E402
from streams.privacy_filter import FilterConfig, FilterEnv  # noqa: E402
from streams.visitor import DailySalts  # noqa: E402
from tests.geoip import write_city_db  # noqa: E402

SITE = "example.com"


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


async def bare_app(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"14")]})
    await send({"type": "http.response.body", "body": b'{"accepted":1}'})


def build_apps(work: Path) -> dict:
    steps.warm_up()
    sites = SiteDirectory(lambda: [Site(SITE, (f"https://{SITE}", f"https://www.{SITE}"))])
    sites.refresh()
    env = FilterEnv(geo=GeoLookup(write_city_db(work / "city.mmdb")), config=FilterConfig(),
                    salts=DailySalts(work / "salts"))
    rows: list[bytes] = []

    def deliver(payload: bytes, count: int, first_ts: float) -> None:
        rows.append(payload)
        if len(rows) > 1000:
            rows.clear()

    trusted = ClientIPResolver(("127.0.0.1/32",))
    embedded = FilteringHandoff(env, lambda n: True, deliver, lambda: True)
    return {
        "server": bare_app,
        "collector": CollectorApp(AcceptAll(), sites, trusted),
        "embedded": CollectorApp(embedded, sites, trusted),
    }


async def measure(app, requests: list[bytes]) -> tuple[float, int]:
    """CPU seconds for all requests, one connection each time through (keep-alive)."""
    server = HTTPServer(app)
    server.loop = asyncio.get_running_loop()
    connection = Connection(server)
    transport = DiscardingTransport()
    connection.connection_made(transport)
    started = time.process_time()
    for raw in requests:
        connection.data_received(raw)
        while connection.current is not None:
            await asyncio.sleep(0)
    return time.process_time() - started, transport.bytes_written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1, help="beacons per request (default 1)")
    ap.add_argument("--rounds", type=int, default=5, help="repetitions; the median and best are shown (default 5)")
    args = ap.parse_args()

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
    print(f"CPU µs per request ({args.requests} requests of {args.batch} beacon(s), {args.rounds} rounds: median / best)")
    previous = 0.0
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"  {name:10s} {median:7.1f} / {min(samples):7.1f}   (+{median - previous:.1f} for this layer)")
        previous = median


if __name__ == "__main__":
    main()
