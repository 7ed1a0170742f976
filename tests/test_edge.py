"""The edge of a running `beacon serve` (issue 27, item 5): /metrics on a listener of its
own, `X-Content-Type-Options: nosniff` on every answer, HSTS only for HTTPS through a
trusted proxy, `Cache-Control: no-store` on every answer with credentials or a 401, and
a request that says one thing twice refused instead of "the last one wins"."""

from __future__ import annotations

import socket

import httpx
import pytest

from beacon.http import metrics_listener
from common.settings import Settings
from tests.server import BeaconServer, cli, free_port
from web.edge import edge_header_lines
from web.ops import Operations
from web.routing import Router

SITE = "edge.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("edge") / "data"
    metrics_port = free_port()
    options = ("--metrics-listen", f"127.0.0.1:{metrics_port}", "--trusted-proxy", "127.0.0.1/32")
    with BeaconServer(data, *options) as running:
        cli("sites", "add", SITE, "--data-dir", str(data))
        running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        running.token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        yield running


def _answers(server) -> dict[str, httpx.Response]:
    url = server.url
    beacon = {"site": SITE, "url": f"https://{SITE}/"}
    return {
        "healthz": httpx.get(f"{url}/healthz"),
        "collect 202": httpx.post(f"{url}/collect", json=beacon),
        "collect 400": httpx.post(f"{url}/collect", json={"site": SITE}),
        "pixel": httpx.get(f"{url}/collect.gif", params={"site": SITE, "url": f"https://{SITE}/"}),
        "tracker": httpx.get(f"{url}/beacon.js"),
        "api 401": httpx.get(f"{url}/api/v1/stats/aggregate", params={"site_id": SITE}),
        "api 200": httpx.get(
            f"{url}/api/v1/stats/aggregate",
            params={"site_id": SITE},
            headers={"Authorization": f"Bearer {server.token}"},
        ),
        "dashboard": httpx.get(f"{url}/dashboard", follow_redirects=True),
        "session 401": httpx.get(f"{url}/dashboard/session"),
        "not found": httpx.get(f"{url}/nowhere"),
        "405": httpx.delete(f"{url}/healthz"),
    }


def test_every_answer_says_nosniff(server):
    for name, response in _answers(server).items():
        assert response.headers.get("x-content-type-options") == "nosniff", name


def test_an_answer_the_server_refuses_itself_says_nosniff_too(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
        head = conn.recv(65536).split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400") and b"x-content-type-options: nosniff" in head.split(b"\r\n")


def test_answers_with_credentials_or_401_are_not_stored(server):
    answers = _answers(server)
    for name in ("api 401", "api 200", "session 401"):
        assert answers[name].headers.get("cache-control") == "no-store", name
    signed_in = httpx.get(f"{server.url}/healthz", headers={"Authorization": "Bearer x"})
    assert signed_in.headers.get("cache-control") == "no-store"
    with_cookie = httpx.get(f"{server.url}/dashboard/session", cookies={"beacon_session": "not-a-session"})
    assert with_cookie.status_code == 401 and with_cookie.headers.get("cache-control") == "no-store"
    assert "cache-control" not in answers["healthz"].headers  # nothing personal, nothing said


def test_hsts_only_when_a_trusted_proxy_says_https(server):
    https = httpx.get(f"{server.url}/healthz", headers={"X-Forwarded-Proto": "https"})
    assert https.headers.get("strict-transport-security") == "max-age=31536000"
    for proto in ("http", "", "https-not"):
        plain = httpx.get(f"{server.url}/healthz", headers={"X-Forwarded-Proto": proto} if proto else {})
        assert "strict-transport-security" not in plain.headers, proto


def test_hsts_is_not_taken_from_an_untrusted_peer():
    scope = {"headers": [(b"x-forwarded-proto", b"https")], "client": ("203.0.113.9", 5000)}

    def proxy(address: str) -> bool:
        return address == "127.0.0.1"

    untrusted = edge_header_lines(scope, 200, [], proxy)
    trusted = edge_header_lines(scope | {"client": ("127.0.0.1", 5000)}, 200, [], proxy)
    assert b"strict-transport-security" not in untrusted and b"strict-transport-security" in trusted


def test_a_repeated_site_id_or_two_authorization_headers_get_400(server):
    auth = {"Authorization": f"Bearer {server.token}"}
    twice = httpx.get(f"{server.url}/api/v1/stats/aggregate?site_id={SITE}&site_id=other.example", headers=auth)
    assert twice.status_code == 400 and twice.json()["parameter"] == "site_id", twice.text
    headers = [("Authorization", f"Bearer {server.token}"), ("Authorization", "Bearer bk_someone-else")]
    two = httpx.get(f"{server.url}/api/v1/stats/aggregate", params={"site_id": SITE}, headers=headers)
    assert two.status_code == 400 and two.json()["header"] == "authorization", two.text
    once = httpx.get(f"{server.url}/api/v1/stats/aggregate", params={"site_id": SITE}, headers=auth)
    assert once.status_code == 200, once.text


def test_metrics_are_served_on_their_own_listener_only(server):
    assert httpx.get(f"{server.url}/metrics").status_code == 404
    own = httpx.get(server.metrics_url)
    assert own.status_code == 200 and "beacon_collector_requests_total" in own.text
    assert own.headers.get("x-content-type-options") == "nosniff"


@pytest.mark.parametrize("depth", [200, 300, 1000, 2000])
def test_props_nested_at_any_depth_get_400(server, depth):
    """300 deep was a 500 (jsonschema-rs's recursion limit), while 200 and 2,000 were 400s."""
    nested = '{"a":' * depth + "1" + "}" * depth
    body = f'{{"site":"{SITE}","url":"https://{SITE}/","props":{nested}}}'
    r = httpx.post(f"{server.url}/collect", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert depth >= 2000 or r.json()["field"].startswith("props"), r.text


def test_metrics_off_takes_the_route_away_and_a_bad_address_is_refused():
    app = Router(Operations().routes())
    assert metrics_listener(app, Settings(metrics_listen="off")) is None
    assert ("GET", "/metrics") not in app.routes and ("GET", "/healthz") in app.routes
    for bad in ("9100", "localhost:", "127.0.0.1:70000", "127.0.0.1:x"):
        with pytest.raises(ValueError, match="metrics_listen"):
            Settings(metrics_listen=bad)
    assert Settings(metrics_listen="[::1]:9100").metrics_address() == ("::1", 9100)


def test_http_workers_share_the_metrics_listener(tmp_path):
    """Each HTTP process of `serve --workers 2` binds the metrics address (SO_REUSEPORT),
    and any of them answers with every process's figures."""
    metrics_port = free_port()
    with BeaconServer(tmp_path / "data", "--workers", "2", "--metrics-listen", f"127.0.0.1:{metrics_port}") as running:
        assert httpx.get(f"{running.url}/metrics").status_code == 404
        for _ in range(4):  # the kernel spreads connections over both processes
            answer = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", headers={"Connection": "close"})
            # the 404 above, counted by the main port's process, read through either (multiprocess metrics)
            assert answer.status_code == 200 and "beacon_http_requests_total{" in answer.text
