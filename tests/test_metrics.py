"""Per-request counts gather in the process and reach Prometheus in steps
(common/metrics.py): nothing counted may be missing from a scrape of the process
that counted it, nor from the shared files once a process of ``serve --workers``
has exited."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from prometheus_client import generate_latest

from common import metrics
from tests.server import BeaconServer, cli

REPO = Path(__file__).resolve().parents[1]


def _value(exposition: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", exposition, re.M)
    return float(found.group(1)) if found else 0.0


_PER_REQUEST_SERIES = (
    "beacon_collector_beacons_accepted_total",
    'beacon_collector_rejected_total{reason="schema"}',
    'beacon_filter_actions_total{action="ip_truncated"}',
    'beacon_filter_pii_scrubbed_total{kind="email"}',
    'beacon_collector_requests_total{status="202"}',
)


def _scrape(series: tuple[str, ...]) -> list[float]:
    text = metrics.exposition().decode()
    return [_value(text, s) for s in series]


def test_a_scrape_shows_every_count_made_before_it():
    before = _scrape(_PER_REQUEST_SERIES)
    metrics.beacons_accepted(7)
    metrics.rejected("schema", 2)
    metrics.count_actions({"ip_truncated": 5, "pii_email": 3, "pii_scrubbed": 1})
    metrics.collector_request(202)
    after = _scrape(_PER_REQUEST_SERIES)
    assert [a - b for a, b in zip(after, before)] == [7, 2, 5, 3, 1]


def test_the_registry_shows_the_counts_to_any_reader():
    """The worker serves REGISTRY with prometheus_client's own HTTP server, not
    through ``exposition()``."""
    series = 'beacon_filter_actions_total{action="bot_dropped"}'
    before = _value(generate_latest(metrics.REGISTRY).decode(), series)
    metrics.count_actions({"bot_dropped": 4})
    assert _value(generate_latest(metrics.REGISTRY).decode(), series) == before + 4


def test_counts_of_a_process_that_exits_reach_the_shared_metrics(tmp_path):
    """``serve --workers``: an HTTP process's last counts are written at its exit,
    before any flush interval has passed."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared), "PYTHONPATH": str(REPO)}
    worker = textwrap.dedent("""
        from common import metrics
        metrics.FLUSH_SECONDS = 3600
        for _ in range(1000):
            metrics.beacons_accepted(1)
            metrics.collector_request(202)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    scrape = subprocess.run(
        [sys.executable, "-c", "from common import metrics; print(metrics.exposition().decode())"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert _value(scrape, "beacon_collector_beacons_accepted_total") == 2000
    assert _value(scrape, 'beacon_collector_requests_total{status="202"}') == 2000


def test_a_scrape_has_no_created_series_and_counts_the_collector_apart_from_other_routes(tmp_path):
    """A real ``beacon serve``: /metrics repeats no counter as ``_created``, and only
    the collector's requests count in beacon_collector_requests_total; the health,
    metrics and dashboard routes count in beacon_http_requests_total by route."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), "example.com")
    chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    with BeaconServer(data_dir) as server, httpx.Client(base_url=server.url, headers={"User-Agent": chrome}) as http:
        before = http.get("/metrics").text
        beacon = {"site": "example.com", "url": "https://example.com/"}
        answers = [http.post("/collect", json=beacon).status_code for _ in range(3)]
        answers += [http.get(path).status_code for path in ("/healthz", "/healthz", "/", "/dashboard", "/nowhere")]
        answers.append(http.get("/api/v1/stats/aggregate", params={"site_id": "example.com"}).status_code)
        assert answers == [202, 202, 202, 200, 200, 302, 200, 404, 401]
        after = http.get("/metrics").text

    assert not re.search(r"^\w+_created[{ ]", after, re.M), re.findall(r"^\w+_created.*$", after, re.M)[:3]
    changes = {
        series: _value(after, series) - _value(before, series)
        for series in (
            'beacon_collector_requests_total{status="202"}',
            'beacon_collector_requests_total{status="200"}',
            'beacon_collector_requests_total{status="302"}',
            'beacon_collector_requests_total{status="404"}',
            'beacon_http_requests_total{route="/healthz",status="200"}',
            'beacon_http_requests_total{route="/",status="302"}',
            'beacon_http_requests_total{route="unrouted",status="404"}',
            'beacon_http_requests_total{route="/metrics",status="200"}',
        )
    }
    assert changes == {
        'beacon_collector_requests_total{status="202"}': 3,
        'beacon_collector_requests_total{status="200"}': 0,
        'beacon_collector_requests_total{status="302"}': 0,
        'beacon_collector_requests_total{status="404"}': 0,
        'beacon_http_requests_total{route="/healthz",status="200"}': 2,
        'beacon_http_requests_total{route="/",status="302"}': 1,
        'beacon_http_requests_total{route="unrouted",status="404"}': 1,
        'beacon_http_requests_total{route="/metrics",status="200"}': 1,  # the scrape before; its own counts after it
    }
