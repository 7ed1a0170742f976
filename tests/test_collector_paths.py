"""The collector answers POST /collect the same way through ASGI (any ASGI server)
and through our HTTP server's direct path (what `beacon serve` and `beacon
collector` use)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from collector.app import CollectorApp
from collector.client_ip import ClientIPResolver
from collector.sites import SiteDirectory
from storage.sites import Site
from web.ops import Operations
from web.routing import Router

ORIGIN = b"https://example.com"


class Keep:
    def __init__(self) -> None:
        self.events = []

    def submit(self, events) -> bool:
        self.events += events
        return True

    def ready(self) -> bool:
        return True

    def durable(self) -> None:
        return None  # kept in memory: nothing to wait for


def make_app() -> tuple[CollectorApp, Keep]:
    sites = SiteDirectory(lambda: [Site("example.com", ("https://example.com",))])
    sites.refresh()
    keep = Keep()
    return CollectorApp(keep, sites, ClientIPResolver()), keep


def scope(body: bytes, content_type: bytes = b"text/plain", method: str = "POST", path: str = "/collect") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "client": ("203.0.113.9", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"content-type", content_type),
            (b"origin", ORIGIN),
            (b"content-length", b"%d" % len(body)),
            (b"user-agent", b"Mozilla/5.0"),
        ],
    }


def through_asgi(app: CollectorApp, request_scope: dict, body: bytes) -> tuple[int, list, bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(request_scope, receive, send))
    return sent[0]["status"], sent[0]["headers"], sent[1]["body"]


GOOD = {"site": "example.com", "url": "https://example.com/a"}
CASES = [
    pytest.param(json.dumps(GOOD).encode(), b"text/plain", id="one beacon"),
    pytest.param(
        json.dumps([GOOD, {"site": "example.com"}, GOOD]).encode(), b"application/json", id="batch with a bad one"
    ),
    pytest.param(b"{not json", b"text/plain", id="invalid JSON"),
    pytest.param(json.dumps(GOOD).encode(), b"text/html", id="content type"),
    pytest.param(b" " * (64 * 1024 + 1), b"text/plain", id="too large"),
    pytest.param(
        json.dumps({"site": "unknown.org", "url": "https://unknown.org/"}).encode(), b"text/plain", id="unknown site"
    ),
]


@pytest.mark.parametrize("body, content_type", CASES)
def test_direct_and_asgi_give_the_same_answer(body, content_type):
    asgi_app, asgi_kept = make_app()
    direct_app, direct_kept = make_app()
    request_scope = scope(body, content_type)
    asgi = through_asgi(asgi_app, request_scope, body)
    direct = direct_app.direct(request_scope, body)
    assert direct == asgi
    assert [e.beacon for e in direct_kept.events] == [e.beacon for e in asgi_kept.events]
    assert (b"content-length", b"%d" % len(direct[2])) in direct[1]


def test_the_direct_path_is_only_post_collect():
    app, _ = make_app()
    assert app.direct(scope(b"", method="GET", path="/collect.gif"), b"") is None
    assert app.direct(scope(b"", method="OPTIONS"), b"") is None
    assert app.direct(scope(b"", path="/optout"), b"") is None
    no_collector = Router(Operations().routes())  # beacon serve --kafka: no /collect
    assert no_collector.direct is None


def test_the_remembered_answers_keep_each_origin_its_own_cors_header():
    app, _ = make_app()
    body = json.dumps(GOOD).encode()
    with_origin = scope(body)
    without_origin = scope(body) | {"headers": [h for h in with_origin["headers"] if h[0] != b"origin"]}
    for _ in range(2):  # the second round gets the remembered answers
        status, headers, _ = app.direct(with_origin, body)
        assert status == 202 and (b"access-control-allow-origin", ORIGIN) in headers
        status, headers, _ = app.direct(without_origin, body)
        assert status == 202 and not any(name == b"access-control-allow-origin" for name, _ in headers)


@pytest.mark.parametrize("ts", ["9" * 5000, "%C2%B2", "1e3", "-1"])  # %C2%B2: "²", a digit to str.isdigit
def test_a_pixel_with_a_malformed_time_gets_400(ts):
    app, keep = make_app()
    query = f"site=example.com&url=https://example.com/&ts={ts}".encode()
    status, _, body = through_asgi(app, scope(b"", method="GET", path="/collect.gif") | {"query_string": query}, b"")
    assert status == 400 and json.loads(body)["field"] == "ts" and not keep.events


def _odd_value(rng):
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            2**63,
            10**30,
            1.5,
            -0.0,
            1e308,
            "",
            "x" * rng.choice([1, 300, 5000]),
            "²",
            "\u202e",
            "\x00",
            [],
            [1, [2]],
            {},
            {"a": {"b": 1}},
            {"": 1},
            "https://example.com/" + "%" * 10,
            "1920x1080\n",
            "::ffff:1.2.3.4",
        ]
    )


def test_no_mangled_beacon_gets_a_5xx():
    """Bad input is the client's error: 4xx, whatever the values (a seeded fuzz)."""
    rng = random.Random(7)
    app, _ = make_app()
    fields = ["site", "url", "type", "name", "referrer", "props", "lang", "screen", "ts", "consent", "device_id", "mac"]
    for _ in range(3000):
        beacon = dict(GOOD)
        for _ in range(rng.randint(1, 3)):
            beacon[rng.choice(fields)] = _odd_value(rng)
        if rng.random() < 0.3:
            beacon["props"] = {rng.choice(["k", "", "x" * 70]): _odd_value(rng)}
        body = json.dumps(beacon if rng.random() < 0.8 else [beacon, GOOD]).encode()
        if rng.random() < 0.1:
            body = body[: rng.randint(0, 40)]
        status = app.direct(scope(body), body)[0]
        assert status in (202, 400, 403), (status, body[:200])
        query = "&".join(
            f"{k}={rng.choice(['', '%FF', '%00', 'x', '1' * 20, '{', '[1]', '%C2%B2'])}" for k in rng.sample(fields, 4)
        )
        status, _, _ = through_asgi(
            app, scope(b"", method="GET", path="/collect.gif") | {"query_string": query.encode()}, b""
        )
        assert status in (200, 400, 403), (status, query)
