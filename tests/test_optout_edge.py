"""POST /optout (issue 27, item 3): a browser's objection must come from a registered
site's page (the rule of /collect), each client gets a few at a time, and a repeat is
recorded once. Before, a page on any site could opt a guessed device ID out, and 400
opt-outs in 4 s were 400 rows kept for two years."""

from __future__ import annotations

import time

import httpx
import pytest

from collector.rate_limit import PerClientRateLimit
from tests.server import BeaconServer, cli

SITE = "optout.example"
BURST = 3
PER_MINUTE = 120  # one more every 0.5 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("optout") / "data"
    with BeaconServer(
        data, "--trusted-proxy", "127.0.0.1/32", "--optout-burst", str(BURST), "--optout-per-minute", str(PER_MINUTE)
    ) as running:
        cli("sites", "add", SITE, "--data-dir", str(data))
        yield running


def _optout(server, client: str, body: dict, origin: str | None = None) -> httpx.Response:
    """As sent by ``client`` through the trusted proxy (the test's own address)."""
    headers = {"X-Forwarded-For": client} | ({"Origin": origin} if origin else {})
    return httpx.post(f"{server.url}/optout", json=body, headers=headers)


def _stored(server) -> tuple[int, int]:
    optouts = server.query("SELECT count() AS n FROM beacon.optouts")[0]["n"]
    logged = server.query("SELECT count() AS n FROM beacon.privacy_log WHERE action = 'optout'")[0]["n"]
    return int(optouts), int(logged)


def test_a_browser_objection_from_another_site_is_refused_and_records_nothing(server):
    before = _stored(server)
    refused = _optout(server, "198.51.100.1", {"device_id": "guessed-id"}, origin="https://evil.example")
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert _stored(server) == before
    own = _optout(server, "198.51.100.1", {"device_id": "own-page-id"}, origin=f"https://{SITE}")
    assert own.status_code == 202 and own.headers["access-control-allow-origin"] == f"https://{SITE}"
    app = _optout(server, "198.51.100.1", {"device_id": "app-id"})  # no Origin: not a browser page
    assert app.status_code == 202
    assert _stored(server) == (before[0] + 2, before[1] + 2)


def test_each_client_has_a_burst_then_a_rate(server):
    client, other = "203.0.113.7", "203.0.113.8"
    answers = [_optout(server, client, {"device_id": f"burst-{i}"}) for i in range(BURST + 2)]
    assert [a.status_code for a in answers] == [202] * BURST + [429, 429]
    retry_after = int(answers[-1].headers["retry-after"])
    assert 1 <= retry_after <= 60 / PER_MINUTE + 1
    assert _optout(server, other, {"device_id": "other-client"}).status_code == 202  # a bucket per client
    deadline = time.monotonic() + retry_after + 5
    while (again := _optout(server, client, {"device_id": "after-the-wait"})).status_code == 429:
        assert time.monotonic() < deadline, "the client's bucket never refilled"
        time.sleep(0.1)
    assert again.status_code == 202


def test_a_repeated_objection_is_recorded_once(server):
    before = _stored(server)
    answers = [_optout(server, "192.0.2.50", {"device_id": "repeating-objector"}) for _ in range(BURST)]
    assert [a.status_code for a in answers] == [202] * BURST  # each answered: the objection holds
    assert _stored(server) == (before[0] + 1, before[1] + 1)


def test_the_buckets_stay_bounded_and_a_full_one_goes_first():
    now = [0.0]
    limit = PerClientRateLimit(per_minute=60, burst=2, max_clients=3, monotonic=lambda: now[0])
    assert limit.allow("a") and limit.allow("a") and not limit.allow("a")
    assert limit.retry_after("a") == 1
    for client in ("b", "c", "d", "e"):
        assert limit.allow(client)
    assert len(limit._buckets) == 3
    now[0] += 2.0  # every bucket full again
    assert limit.allow("f") and len(limit._buckets) <= 3
