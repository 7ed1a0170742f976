"""Revenue end to end: Plausible's tracker sends purchases with ``revenue`` to a
running ``beacon serve``; the Stats API sums them per row under the revenue goal
(``beacon goals add SITE --event Purchase --currency EUR``), in EUR only; a bad
revenue is a 400 in Plausible's shape, and nothing of it is stored."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest

from tests.server import BeaconServer, cli

SITE = "shop.test"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
# (browser's user agent, client address, amount, currency) of each purchase.
PURCHASES = [
    (CHROME, "198.51.100.1", "19.99", "EUR"),
    (CHROME, "198.51.100.2", "5.005", "EUR"),
    (FIREFOX, "198.51.100.3", "100", "EUR"),
    (FIREFOX, "198.51.100.3", "40.5", "EUR"),
    (FIREFOX, "198.51.100.4", "70", "USD"),  # another currency: not in EUR's sums
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("revenue") / "data"
    with BeaconServer(data, "--trusted-proxy", "127.0.0.1/32") as running:
        cli("sites", "add", SITE, "--data-dir", str(data))
        cli("goals", "add", SITE, "--event", "Purchase", "--currency", "EUR", "--data-dir", str(data))
        running.token = cli("tokens", "create", "--role", "analyst", "--data-dir", str(data)).stdout.strip()
        yield running


def send(server, body: dict, user_agent: str, address: str) -> httpx.Response:
    headers = {"User-Agent": user_agent, "X-Forwarded-For": address, "Content-Type": "text/plain"}
    return httpx.post(f"{server.url}/api/event", json=body, headers=headers, timeout=30)


def breakdown(server, **params) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/stats/breakdown",
        params={"site_id": SITE, "period": "day"} | params,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )


def money(amount: Decimal) -> float:
    return float(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_purchases_are_summed_per_browser_in_the_goals_currency(server):
    for agent, address, amount, currency in PURCHASES:
        page = {"n": "pageview", "u": f"https://{SITE}/cart", "d": SITE}
        purchase = {"n": "Purchase", "u": f"https://{SITE}/cart", "d": SITE}
        assert send(server, page, agent, address).status_code == 202
        purchase["revenue"] = {"amount": amount, "currency": currency}
        assert send(server, purchase, agent, address).status_code == 202
    want = {}
    for browser, agent in (("Chrome", CHROME), ("Firefox", FIREFOX)):
        mine = [p for p in PURCHASES if p[0] == agent]
        euros = [Decimal(p[2]) for p in mine if p[3] == "EUR"]
        want[browser] = {
            "visitors": len({p[1] for p in mine}),
            "events": len(mine),
            "total_revenue": money(sum(euros)),
            "average_revenue": money(sum(euros) / len(euros)),
        }
    deadline, answer = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        r = breakdown(
            server,
            property="visit:browser",
            filters="event:goal==Purchase",
            metrics="visitors,events,total_revenue,average_revenue",
        )
        assert r.status_code == 200, r.text
        answer = {row.pop("browser"): row for row in r.json()["results"]}
        if answer == want:
            return
        time.sleep(0.2)
    assert answer == want


def test_a_bad_revenue_is_refused_in_plausibles_shape(server):
    bad = {"n": "Purchase", "u": f"https://{SITE}/cart", "d": SITE, "revenue": {"amount": "ten", "currency": "EUR"}}
    r = send(server, bad, CHROME, "198.51.100.9")
    assert r.status_code == 400 and list(r.json()["errors"]) == ["revenue"]


def test_revenue_without_a_revenue_goal_filter_is_a_400(server):
    r = breakdown(server, property="visit:browser", metrics="visitors,total_revenue")
    assert r.status_code == 400 and "total_revenue" in r.json()["error"]
