"""POST /api/event through a process's router: Plausible's answers, /collect's
validation, rejection counts, and the route taken before the token API's /api/."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import generate_latest

from collector.app import CollectorApp
from collector.client_ip import ClientIPResolver
from collector.sites import SiteDirectory
from common import metrics
from storage.sites import Site
from web.routing import Router

ORIGIN = "https://example.com"
PAGEVIEW = {"n": "pageview", "v": 36, "u": "https://example.com/pricing", "d": "example.com", "r": None}


class Handoff:
    def __init__(self, room: bool = True) -> None:
        self.events = []
        self.room = room

    def submit(self, events) -> bool:
        if self.room:
            self.events += events
        return self.room

    def ready(self) -> bool:
        return True

    def durable(self) -> None:
        return None  # kept in memory: nothing to wait for


class TokenApi:
    """Stands for the token API mounted at /api/: records what reaches it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def process(handoff: Handoff) -> tuple[Router, TokenApi]:
    sites = SiteDirectory(lambda: [Site("example.com", (ORIGIN,)), Site("shop.example.com", (ORIGIN,))])
    sites.refresh()
    token_api = TokenApi()
    collector = CollectorApp(handoff, sites, ClientIPResolver())
    return Router(collector.routes(), mounts={"/api/": token_api}), token_api


def request(
    app: Router,
    body: bytes,
    content_type: str = "text/plain",
    origin: str = ORIGIN,
    method: str = "POST",
    path: str = "/api/event",
) -> tuple[int, dict[str, str], bytes]:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", b"%d" % len(body)),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"),
    ]
    headers += [(b"origin", origin.encode())] if origin else []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "client": ("203.0.113.9", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": headers,
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}, sent[1]["body"]


def rejected(reason: str) -> float:
    series = f'beacon_collector_rejected_total{{reason="{reason}"}} '
    lines = [line for line in generate_latest(metrics.REGISTRY).decode().splitlines() if line.startswith(series)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_plausible_pageview_is_accepted_by_the_collector_not_the_token_api():
    handoff = Handoff()
    app, token_api = process(handoff)
    status, headers, body = request(app, json.dumps(PAGEVIEW).encode())
    assert (status, body) == (202, b"ok")
    assert headers["access-control-allow-origin"] == ORIGIN and "x-plausible-dropped" not in headers
    [event] = handoff.events
    assert (event.beacon.site, event.beacon.url, event.beacon.type) == ("example.com", PAGEVIEW["u"], "pageview")
    assert event.context.user_agent.startswith("Mozilla/5.0")
    assert token_api.paths == []
    request(app, b"", method="GET", path="/api/v1/stats/aggregate")
    assert token_api.paths == ["/api/v1/stats/aggregate"]  # the rest of /api/ is still the token API's


def test_a_comma_list_stores_the_event_once_per_registered_site_and_says_how_many_were_dropped():
    handoff = Handoff()
    app, _ = process(handoff)
    event = {
        "name": "Signup",
        "url": "https://example.com/join",
        "domain": "example.com,shop.example.com,other.org",
        "props": {"plan": "pro"},
    }
    before = rejected("unknown_site")
    status, headers, body = request(app, json.dumps(event).encode(), "application/json")
    assert (status, body, headers["x-plausible-dropped"]) == (202, b"ok", "1")
    assert sorted(e.beacon.site for e in handoff.events) == ["example.com", "shop.example.com"]
    assert all(e.beacon.name == "Signup" and e.beacon.props == {"plan": "pro"} for e in handoff.events)
    assert rejected("unknown_site") == before + 1


PURCHASE = {"n": "Purchase", "u": "https://example.com/checkout", "d": "example.com"}


@pytest.mark.parametrize(
    "revenue, stored",
    [
        ({"revenue": {"amount": "12.5", "currency": "EUR"}}, ("12.500", "EUR")),
        ({"$": {"amount": 7, "currency": "usd"}}, ("7.000", "USD")),
        ({"revenue": {"amount": 0.0005, "currency": "JPY"}}, ("0.001", "JPY")),
        ({}, ("", "")),
    ],
)
def test_a_purchase_carries_its_revenue_to_the_beacon(revenue, stored):
    handoff = Handoff()
    app, _ = process(handoff)
    status, _, body = request(app, json.dumps(PURCHASE | revenue).encode())
    assert (status, body) == (202, b"ok")
    [event] = handoff.events
    assert (event.beacon.revenue_amount, event.beacon.revenue_currency) == stored


@pytest.mark.parametrize(
    "event, field, reason",
    [
        ({"u": "https://example.com/", "d": "example.com"}, "name", "schema"),
        (PAGEVIEW | {"u": "ftp://example.com/"}, "url", "invalid_url"),
        (PAGEVIEW | {"d": "other.org"}, "domain", "unknown_site"),
        (PAGEVIEW | {"p": {f"k{i}": i for i in range(31)}}, "props", "schema"),
        ([PAGEVIEW], "request", "invalid_type"),
        (PURCHASE | {"revenue": {"amount": "12,50", "currency": "EUR"}}, "revenue", "schema"),
        (PURCHASE | {"revenue": {"amount": -3, "currency": "EUR"}}, "revenue", "schema"),
        (PURCHASE | {"revenue": {"amount": "3", "currency": "EURO"}}, "revenue", "schema"),
        (PURCHASE | {"revenue": {"amount": "3"}}, "revenue", "schema"),
        (PURCHASE | {"$": "12.5 EUR"}, "revenue", "schema"),
    ],
)
def test_an_invalid_event_is_a_400_in_plausibles_shape_and_counted(event, field, reason):
    handoff = Handoff()
    app, _ = process(handoff)
    before = rejected(reason)
    status, _, body = request(app, json.dumps(event).encode())
    assert status == 400 and list(json.loads(body)["errors"]) == [field]
    assert handoff.events == [] and rejected(reason) == before + 1


@pytest.mark.parametrize(
    "body, content_type, origin, status, reason",
    [
        (json.dumps(PAGEVIEW).encode(), "text/html", ORIGIN, 415, "content_type"),
        (b" " * (64 * 1024 + 1), "text/plain", ORIGIN, 413, "too_large"),
        (b"{not json", "text/plain", ORIGIN, 400, "invalid_json"),
        (json.dumps(PAGEVIEW).encode(), "text/plain", "https://evil.example.net", 403, "origin_not_allowed"),
    ],
)
def test_the_collectors_other_refusals_apply(body, content_type, origin, status, reason):
    app, _ = process(Handoff())
    before = rejected(reason)
    assert request(app, body, content_type, origin)[0] == status
    assert rejected(reason) == before + 1


def test_when_storage_cannot_keep_up_a_page_can_read_retry_after():
    app, _ = process(Handoff(room=False))
    status, headers, _ = request(app, json.dumps(PAGEVIEW).encode())
    assert status == 503 and headers["retry-after"] == "1"
    assert headers["access-control-allow-origin"] == ORIGIN
    assert headers["access-control-expose-headers"] == "Retry-After"


def test_a_preflight_for_json_from_a_registered_origin():
    app, _ = process(Handoff())
    status, headers, _ = request(app, b"", method="OPTIONS")
    assert status == 204 and headers["access-control-allow-origin"] == ORIGIN
    assert request(app, b"", origin="https://evil.example.net", method="OPTIONS")[0] == 403


def test_the_tracker_script_is_served_by_the_collector():
    app, _ = process(Handoff())
    status, headers, body = request(app, b"", origin="", method="GET", path="/beacon.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and b"sendBeacon" in body
