"""``beacon serve`` as a user runs it: a real process, real HTTP, the real engine."""

from __future__ import annotations

import json
import random
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx
import pytest

from streams.steps import pseudonymise
from tests.faults import wait_for
from tests.server import BeaconServer, cli

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
SITE = "example.com"


def _ip(i: int) -> str:
    return random.Random(i).choice(
        [
            f"203.0.113.{i % 250 + 1}",
            f"198.51.100.{i % 250 + 1}",
            f"2001:db8:1:{i:x}::{i % 7 + 1}",
            f"::ffff:198.51.100.{i % 200 + 3}",
        ]
    )


def _beacon(i: int, **extra) -> dict:
    return {
        "site": SITE,
        "url": f"https://example.com/p/{i}?utm_source=news&email=someone%40mail.com",
        "referrer": "https://www.google.com/search?q=secret",
        "lang": "fr-CA",
        "screen": "1920x1080",
        "props": {"plan": "pro", "n": i},
    } | extra


@pytest.fixture
def server(tmp_path, geoip_db):
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE, "--origin", "https://example.com")
    srv = BeaconServer(data_dir, "--geoip", str(geoip_db), "--trusted-proxy", "127.0.0.1/32")
    yield srv.start()
    srv.kill()


def test_a_thousand_beacons_in_every_form_are_all_stored_after_sigterm(server):
    sent = []
    with httpx.Client(base_url=server.url, headers={"User-Agent": CHROME}) as http:

        def send(kind: str, ids: list[int]) -> int:
            headers = {"X-Forwarded-For": _ip(ids[0])}
            if kind == "pixel":
                b = _beacon(ids[0])
                params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in b.items()}
                r = http.get("/collect.gif?" + urlencode(params), headers=headers)
                assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
            else:
                body = [_beacon(i) for i in ids] if kind == "batch" else _beacon(ids[0])
                ctype = "text/plain;charset=UTF-8" if kind == "text" else "application/json"
                r = http.post("/collect", content=json.dumps(body), headers=headers | {"Content-Type": ctype})
                assert r.status_code == 202, r.text
                assert r.json()["accepted"] == len(ids)
            return len(ids)

        jobs = [("json", [i]) for i in range(0, 250)] + [("text", [i]) for i in range(250, 500)]
        jobs += [("batch", list(range(i, i + 10))) for i in range(500, 750, 10)]
        jobs += [("pixel", [i]) for i in range(750, 1000)]
        with ThreadPoolExecutor(8) as pool:
            sent = sum(pool.map(lambda job: send(*job), jobs))
    assert sent == 1000
    assert server.stop()  # straight after the last 202: the queue must be flushed

    rows = server.query("SELECT path, url, referrer, ip_truncated, country_code, props FROM beacon.events")
    assert len(rows) == 1000
    assert sorted(int(r["path"].rsplit("/", 1)[1]) for r in rows) == list(range(1000))
    assert all(r["url"].endswith("?utm_source=news") for r in rows)  # the e-mail parameter is gone
    assert all(r["referrer"] == "https://www.google.com/search" for r in rows)
    assert {r["country_code"] for r in rows} >= {"CA", "FR", "DE"}
    assert all(r["props"] == {"plan": "pro", "n": r["path"].rsplit("/", 1)[1]} for r in rows)


def test_a_referrer_on_another_port_is_stored_with_it_as_the_url_is(server):
    """The page before, on a local or staging server, names the same origin as the page."""
    beacon = {
        "site": SITE,
        "url": "http://127.0.0.1:8765/next.html",
        "referrer": "http://127.0.0.1:8765/index.html?q=1",
    }
    r = httpx.post(f"{server.url}/collect", json=beacon, headers={"User-Agent": CHROME})
    assert r.status_code == 202, r.text
    assert server.stop()
    rows = server.query("SELECT url, referrer, referrer_source FROM beacon.events")
    assert rows == [
        {
            "url": "http://127.0.0.1:8765/next.html",
            "referrer": "http://127.0.0.1:8765/index.html",
            "referrer_source": "",
        }
    ]


def _all_stored_text(server: BeaconServer) -> str:
    """Every value of every table, as text (an aggregate's sketch as what it counts)."""
    columns: dict[str, list[str]] = {}
    for r in server.query(
        "SELECT table, name, type FROM system.columns WHERE database = 'beacon' ORDER BY table, position"
    ):
        name = f"`{r['name']}`"
        columns.setdefault(r["table"], []).append(
            f"finalizeAggregation({name})" if r["type"].startswith("AggregateFunction") else name
        )
    assert "events" in columns
    return "\n".join(
        json.dumps(server.query(f"SELECT {', '.join(cols)} FROM beacon.`{t}`")) for t, cols in columns.items()
    )


def test_no_raw_ip_mac_or_unconsented_device_id_is_stored_after_a_mixed_load(server):
    ips, macs, unconsented, consented = set(), set(), set(), set()
    with httpx.Client(base_url=server.url) as http:
        for i in range(200):
            ip = _ip(i)
            mac_bytes = [random.Random(i).randrange(256) for _ in range(6)]
            mac = "-".join(f"{b:02X}" for b in mac_bytes)
            consent = {"analytics": True, "device_id": i % 2 == 0, "mac": i % 3 == 0}
            headers = {"X-Forwarded-For": ip, "User-Agent": CHROME if i % 2 else SAFARI, "Content-Type": "text/plain"}
            if i % 5 == 0:
                headers["DNT"] = "1"
            if i % 7 == 0:
                headers["Sec-GPC"] = "1"
            device_id = f"device-{i:04d}-{'x' * 8}"
            # Personal data where a careless page puts it: path, props, referrer.
            adversarial = {
                "url": f"https://example.com/p/{i}/user{i}@mail.com?utm_source=news",
                "referrer": f"https://crm.example.net/contact/{ip}/",
                "props": {"plan": "pro", "n": i, "contact": f"user{i}@mail.com", "seen_ip": ip, "hw": mac},
            }
            r = http.post(
                "/collect",
                headers=headers,
                content=json.dumps(_beacon(i, device_id=device_id, mac=mac, consent=consent) | adversarial),
            )
            assert r.status_code == 202
            ips.add(ip.removeprefix("::ffff:"))
            macs.add(":".join(f"{b:02x}" for b in mac_bytes))
            withdrawn = i % 5 == 0 or i % 7 == 0
            (consented if consent["device_id"] and not withdrawn else unconsented).add(device_id)
            if not consent["mac"] or withdrawn:
                macs.add(mac)
    assert server.stop()

    stored = _all_stored_text(server)
    assert stored.count('"path":') == 200  # everything arrived, so the scan is meaningful
    for ip in ips:
        assert not re.search(rf"(?<![0-9a-f.:]){re.escape(ip)}(?![0-9a-f.:])", stored, re.I), "raw IP stored"
    for device_id in unconsented:
        assert device_id not in stored, "unconsented device ID stored"
    key = (server.data_dir / "id.key").read_bytes().strip()
    for device_id in consented | unconsented:
        assert device_id not in stored  # raw IDs never: consented ones as a pseudonym
    for device_id in consented:
        assert pseudonymise(device_id, key) in stored
    for device_id in unconsented:
        assert pseudonymise(device_id, key) not in stored
    lowered = stored.lower()
    stored_macs = {m for m in macs if m.lower() in lowered}
    assert stored_macs == set()  # consented MACs are kept as pseudonyms only
    assert "someone@mail.com" not in stored and "someone%40mail.com" not in stored
    assert "@mail.com" not in stored and "[email]" in stored
    assert "q=secret" not in stored
    assert "latitude" not in stored and "H3Z" not in stored
    visitors = server.query(
        "SELECT countIf(visitor_id = 0) AS missing, uniqExact(visitor_id) AS distinct_visitors FROM beacon.events"
    )[0]
    assert visitors["missing"] == 0 and visitors["distinct_visitors"] > 100
    salts = [p.read_bytes().hex() for p in (server.data_dir / "salts").glob("salt-*")]
    assert salts and not any(salt in stored for salt in salts)
    audit = cli("privacy", "audit", "--data-dir", str(server.data_dir), check=False)
    assert audit.returncode == 0, audit.stdout
    assert "no personal data found" in audit.stdout


BAD_REQUESTS = [
    ("invalid JSON", "POST", "/collect", {"Content-Type": "application/json"}, b"{nope", 400),
    (
        "invalid UTF-8",
        "POST",
        "/collect",
        {"Content-Type": "text/plain"},
        b'{"site": "example.com", "url": "https://example.com/\xff"}',
        400,
    ),
    (
        "wrong type",
        "POST",
        "/collect",
        {"Content-Type": "application/json"},
        b'{"site": 5, "url": "https://example.com/"}',
        400,
    ),
    (
        "props not flat",
        "POST",
        "/collect",
        {"Content-Type": "application/json"},
        b'{"site": "example.com", "url": "https://example.com/", "props": {"a": [1]}}',
        400,
    ),
    ("missing url", "POST", "/collect", {"Content-Type": "application/json"}, b'{"site": "example.com"}', 400),
    (
        "unknown site",
        "POST",
        "/collect",
        {"Content-Type": "application/json"},
        b'{"site": "evil.org", "url": "https://evil.org/"}',
        400,
    ),
    ("array of junk", "POST", "/collect", {"Content-Type": "application/json"}, b"[1, 2, 3]", 400),
    (
        "too many in batch",
        "POST",
        "/collect",
        {"Content-Type": "application/json"},
        json.dumps([{"site": SITE, "url": "https://example.com/"}] * 51).encode(),
        400,
    ),
    ("empty body", "POST", "/collect", {"Content-Type": "application/json"}, b"", 400),
    (
        "oversize",
        "POST",
        "/collect",
        {"Content-Type": "application/json"},
        b'{"site": "example.com", "url": "https://example.com/", "x": "' + b"a" * 70_000 + b'"}',
        413,
    ),
    ("form post", "POST", "/collect", {"Content-Type": "application/x-www-form-urlencoded"}, b"site=example.com", 415),
    ("no content type", "POST", "/collect", {}, b'{"site": "example.com", "url": "https://example.com/"}', 415),
    ("wrong method", "PUT", "/collect", {}, b"", 405),
    ("unknown route", "GET", "/nope", {}, b"", 404),
    ("pixel without url", "GET", "/collect.gif?site=example.com", {}, b"", 400),
    ("pixel bad props", "GET", "/collect.gif?site=example.com&url=https://example.com/&props={x", {}, b"", 400),
    ("pixel bad ts", "GET", "/collect.gif?site=example.com&url=https://example.com/&ts=-1", {}, b"", 400),
    # A client clock past 2099 would not fit the client_ts column: one such beacon
    # accepted would fail its whole INSERT batch, again and again.
    (
        "client time past 2099",
        "POST",
        "/collect",
        {"Content-Type": "text/plain"},
        b'{"site": "example.com", "url": "https://example.com/", "ts": 10000000000000000}',
        400,
    ),
    (
        "pixel time past 2099",
        "GET",
        "/collect.gif?site=example.com&url=https://example.com/&ts=99999999999999999999",
        {},
        b"",
        400,
    ),
    (
        "foreign origin",
        "POST",
        "/collect",
        {"Content-Type": "text/plain", "Origin": "https://evil.org"},
        b'{"site": "example.com", "url": "https://example.com/"}',
        403,
    ),
]


def test_malformed_input_gets_a_clear_4xx_and_never_a_5xx(server):
    with httpx.Client(base_url=server.url, headers={"User-Agent": CHROME}) as http:
        for label, method, path, headers, body, status in BAD_REQUESTS:
            r = http.request(method, path, headers=headers, content=body)
            assert r.status_code == status, f"{label}: {r.status_code} {r.text}"
            assert "error" in r.json(), label
        # A batch with bad beacons keeps the good ones.
        batch = [
            {"site": SITE, "url": "https://example.com/good1"},
            {"site": SITE},
            {"site": SITE, "url": "https://example.com/good2"},
        ]
        r = http.post("/collect", json=batch)
        assert r.status_code == 202
        assert r.json() == {
            "accepted": 2,
            "rejected": [{"index": 1, "error": '"url" is a required property', "field": "url"}],
        }
        metrics = http.get("/metrics").text
        assert http.get("/healthz").status_code == 200
    assert server.stop()
    assert re.search(r'beacon_collector_rejected_total\{reason="schema"\} [4-9]', metrics)
    assert re.search(r'beacon_collector_rejected_total\{reason="too_large"\} 1', metrics)
    assert 'status="5' not in metrics
    assert [r["path"] for r in server.query("SELECT path FROM beacon.events ORDER BY path")] == ["/good1", "/good2"]


def test_cors_only_for_registered_origins(server):
    with httpx.Client(base_url=server.url) as http:
        ok = http.options(
            "/collect", headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
        )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == "https://example.com"
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert http.options("/collect", headers={"Origin": "https://evil.org"}).status_code == 403
        r = http.post(
            "/collect",
            headers={"Origin": "https://example.com", "Content-Type": "text/plain", "User-Agent": CHROME},
            content=json.dumps({"site": SITE, "url": "https://example.com/"}),
        )
        assert r.status_code == 202 and r.headers["access-control-allow-origin"] == "https://example.com"


def test_cli_reaches_the_running_server(server):
    """While serve owns the chDB directory, the CLI goes through its control socket."""
    with httpx.Client(base_url=server.url, headers={"User-Agent": CHROME}) as http:
        body = {"site": "shop.example.org", "url": "https://shop.example.org/"}
        assert http.post("/collect", json=body).status_code == 400
        cli("sites", "add", "--data-dir", str(server.data_dir), "shop.example.org")
        listed = cli("sites", "list", "--data-dir", str(server.data_dir)).stdout
        assert "shop.example.org" in listed and "example.com" in listed
        # `sites add` returns once the running server has reloaded its site list.
        assert http.post("/collect", json=body).status_code == 202
    wait_for(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] >= 1, 15, "the beacon stored")
    assert server.query("SELECT site FROM beacon.events") == [{"site": "shop.example.org"}]
    out = cli(
        "query", "--data-dir", str(server.data_dir), "SELECT site, count() AS n FROM beacon.events GROUP BY site"
    ).stdout
    assert out.splitlines() == ["site\tn", "shop.example.org\t1"]


def test_full_queue_sheds_load_with_503_and_keeps_what_it_accepted(tmp_path):
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    with BeaconServer(data_dir, "--queue-capacity", "5", "--flush-interval", "60") as srv:
        with httpx.Client(base_url=srv.url, headers={"User-Agent": CHROME}) as http:
            codes = [http.post("/collect", json={"site": SITE, "url": f"https://example.com/{i}"}) for i in range(8)]
        assert [r.status_code for r in codes] == [202] * 5 + [503] * 3
        assert codes[-1].headers["retry-after"] == "1"
        assert srv.stop()
        assert srv.query("SELECT count() AS n FROM beacon.events") == [{"n": 5}]


def test_forwarding_headers_are_ignored_without_a_trusted_proxy(tmp_path):
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    with BeaconServer(data_dir) as srv:  # no --trusted-proxy
        headers = {"User-Agent": CHROME, "X-Forwarded-For": "198.51.100.7", "Forwarded": "for=203.0.113.9"}
        assert httpx.post(f"{srv.url}/collect", json=_beacon(1), headers=headers).status_code == 202
        assert srv.stop()
        assert srv.query("SELECT ip_truncated FROM beacon.events") == [{"ip_truncated": "127.0.0.0"}]


def test_behind_a_proxy_only_the_header_it_sets_names_the_client(tmp_path):
    """The proxy appends X-Forwarded-For; a visitor who sends Forwarded themselves
    does not choose the stored address (it did before --client-ip-header)."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    with BeaconServer(data_dir, "--trusted-proxy", "127.0.0.1/32") as srv:
        headers = {"User-Agent": CHROME, "X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.7"}
        assert httpx.post(f"{srv.url}/collect", json=_beacon(1), headers=headers).status_code == 202
        assert srv.stop()
        assert srv.query("SELECT ip_truncated FROM beacon.events") == [{"ip_truncated": "203.0.113.0"}]


def test_several_http_processes_store_everything_they_accepted(tmp_path):
    """--workers 2: two processes filter, one owns the store; SIGTERM loses nothing."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    with BeaconServer(data_dir, "--workers", "2", "--trusted-proxy", "127.0.0.1/32") as srv:

        def post(i: int) -> int:
            body = [_beacon(i * 5 + k) for k in range(5)]
            headers = {"User-Agent": CHROME, "X-Forwarded-For": _ip(i), "Content-Type": "text/plain"}
            return http.post("/collect", content=json.dumps(body), headers=headers).json()["accepted"]

        with httpx.Client(base_url=srv.url) as http, ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(post, range(200))) == 1000
            cli("sites", "add", "--data-dir", str(data_dir), "late.example.org")
            late = {"site": "late.example.org", "url": "https://late.example.org/"}
            accepted_late = 0
            for _ in range(50):  # each worker process re-reads the site list every second
                codes = [http.post("/collect", json=late, headers={"User-Agent": CHROME}).status_code for _ in range(4)]
                accepted_late += codes.count(202)
                if set(codes) == {202}:
                    break
                time.sleep(0.1)
            assert set(codes) == {202}
            # Each process adds its counts to the shared metrics every second.
            expected, deadline = str(1000 + accepted_late), time.monotonic() + 5
            while (
                counted := _metric(http.get("/metrics").text, "beacon_collector_beacons_accepted_total")
            ) != expected:
                assert time.monotonic() < deadline, f"{counted} beacons counted, {expected} accepted"
                time.sleep(0.2)
        assert srv.stop()
    rows = srv.query("SELECT count() AS n, uniqExact(path) AS paths FROM beacon.events WHERE site = 'example.com'")
    assert rows == [{"n": 1000, "paths": 1000}]


def test_export_then_erase_one_subject_among_ten_thousand_events(server, tmp_path):
    subject = "subject-device-0042"
    with httpx.Client(base_url=server.url, headers={"User-Agent": CHROME, "Content-Type": "text/plain"}) as http:

        def post(i: int) -> int:
            body = [
                _beacon(i * 50 + k, device_id=f"other-{(i * 50 + k) % 97}", consent={"device_id": True})
                for k in range(50)
            ]
            if i % 10 == 0:  # the subject's own 20 visits, spread among the others
                body[0] = _beacon(10_000 + i, device_id=subject, consent={"device_id": True})
            return http.post("/collect", content=json.dumps(body)).json()["accepted"]

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(post, range(200))) == 10_000
    wait_for(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] >= 10_000, 30, "10,000 rows stored")

    out = tmp_path / "export"
    result = cli(
        "privacy",
        "export",
        "--data-dir",
        str(server.data_dir),
        "--device-id",
        subject,
        "--out",
        str(out),
        "--actor",
        "privacy-officer",
    )
    assert "exported 20 row(s)" in result.stdout
    rows = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(int(r["path"].rsplit("/", 1)[1]) >= 10_000 for r in rows)
    assert len((out / "events.csv").read_text().splitlines()) == 21
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"]["events"]["rows"] == 20 and set(rows[0]) <= set(manifest["fields"])

    result = cli(
        "privacy", "erase", "--data-dir", str(server.data_dir), "--device-id", subject, "--actor", "privacy-officer"
    )
    assert "erased 20 row(s)" in result.stdout
    assert server.query("SELECT count() AS n FROM beacon.events") == [{"n": 9_980}]
    key = (server.data_dir / "id.key").read_bytes().strip()
    assert server.query(f"SELECT count() AS n FROM beacon.events WHERE device_id = '{pseudonymise(subject, key)}'") == [
        {"n": 0}
    ]
    log = server.query("SELECT action, subject, rows, actor FROM beacon.privacy_log ORDER BY ts")
    assert [(r["action"], r["rows"], r["actor"]) for r in log] == [
        ("export", 20, "privacy-officer"),
        ("erase", 20, "privacy-officer"),
    ]
    assert all(r["subject"] == pseudonymise(subject, key) for r in log)
    assert subject not in json.dumps(log)


def test_an_objection_stops_collection_for_that_device_at_once(server):
    device, mac = "objecting-device-1", "AA-BB-CC-00-11-22"
    consent = {"analytics": True, "device_id": True, "mac": True}
    with httpx.Client(base_url=server.url, headers={"User-Agent": CHROME}) as http:

        def send(i: int, **fields) -> None:
            assert http.post("/collect", json=_beacon(i, **({"consent": consent} | fields))).status_code == 202

        send(1, device_id=device)  # before the objection: stored
        assert http.post("/optout", json={"device_id": device}).status_code == 202
        send(2, device_id=device)
        send(3, device_id=device, consent={"device_id": False})  # unconsented: still the same person
        send(4, device_id="someone-else")
        cli("privacy", "optout", "--data-dir", str(server.data_dir), "--mac", mac, "--actor", "officer")
        send(5, mac=mac.lower().replace("-", ":"))
        send(6)
        assert http.post("/optout", json={}).status_code == 400
        assert http.post("/optout", json={"mac": "not-a-mac"}).json()["field"] == "mac"
        assert (
            http.post(
                "/optout", content=b"device_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
            ).status_code
            == 415
        )
    assert server.stop()
    paths = sorted(r["path"] for r in server.query("SELECT path FROM beacon.events"))
    assert paths == ["/p/1", "/p/4", "/p/6"]
    log = server.query("SELECT action, actor FROM beacon.privacy_log ORDER BY ts")
    assert log == [{"action": "optout", "actor": "visitor (POST /optout)"}, {"action": "optout", "actor": "officer"}]
    stored = json.dumps(server.query("SELECT * FROM beacon.optouts")) + json.dumps(log)
    assert device not in stored and "aa:bb:cc:00:11:22" not in stored


def test_http_processes_stop_when_their_owner_dies(tmp_path):
    """--workers 2 and the owner is killed (SIGKILL, OOM…): its HTTP processes stop
    too, rather than answering 202 for beacons that nobody can store any more."""
    from pathlib import Path

    srv = BeaconServer(tmp_path / "data", "--workers", "2").start()
    owner = srv.process.pid

    def http_processes() -> list[int]:
        children = [int(pid) for pid in Path(f"/proc/{owner}/task/{owner}/children").read_text().split()]
        return [
            pid
            for pid in children
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    # Ready once one HTTP process answers; the other may still be starting.
    deadline = time.monotonic() + 15
    while len(workers := http_processes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == 2
    srv.kill()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{srv.url}/readyz", timeout=2)


def test_an_http_process_that_cannot_start_stops_the_server(tmp_path):
    """--workers 2 where no HTTP process can bind its metrics address (taken by a socket
    without SO_REUSEPORT): each exits before it serves, which the owner takes for a
    failed start, not a crash to restart from: the server stops with the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_address = f"127.0.0.1:{taken.getsockname()[1]}"
        srv = BeaconServer(tmp_path / "data", "--workers", "2", "--metrics-listen", metrics_address)
        with pytest.raises(AssertionError, match="beacon serve exited 1"):
            srv.start()
    assert "an HTTP worker exited at start" in srv.log.read_text()


def _metric(exposition: str, name: str) -> str | None:
    found = re.search(rf"^{name} (\d+)", exposition, re.M)
    return found.group(1) if found else None
