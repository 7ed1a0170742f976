"""The privacy API over HTTP (/api/v1/privacy/…) against real ``beacon serve``
processes: tokens, export, erasure and objection, in one process and with --workers 2."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from streams.steps import pseudonymise
from tests.faults import wait_for
from tests.server import BeaconServer, cli
from tests.test_tokens import create

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SITE = "example.com"
API = "/api/v1/privacy/"
SUBJECT = "subject-device-0042"


def _beacon(i: int, device_id: str) -> dict:
    return {"site": SITE, "url": f"https://example.com/p/{i}", "device_id": device_id, "consent": {"device_id": True}}


def _send(http: httpx.Client, ids: range, device_id=lambda i: f"other-{i % 37}") -> int:
    body = [_beacon(i, device_id(i)) for i in ids]
    r = http.post("/collect", content=json.dumps(body), headers={"User-Agent": CHROME, "Content-Type": "text/plain"})
    assert r.status_code == 202, r.text
    return r.json()["accepted"]


def _load(http: httpx.Client) -> None:
    """500 events of 37 other devices with the subject's 10 among them."""
    subject_every_50 = lambda i: SUBJECT if i % 50 == 7 else f"other-{i % 37}"  # noqa: E731
    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(lambda s: _send(http, range(s, s + 25), subject_every_50), range(0, 500, 25))) == 500


def _wait_rows(server: BeaconServer, n: int) -> None:
    wait_for(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] >= n, 15, f"{n} rows stored")


def _dropped_as_opted_out(http: httpx.Client) -> float:
    found = re.search(
        r'^beacon_filter_actions_total\{action="opted_out_dropped"\} (\S+)', http.get("/metrics").text, re.M
    )
    return float(found.group(1)) if found else 0.0


def _wait_objection_everywhere(url: str, http: httpx.Client, device_id: str, timeout: float = 20) -> None:
    """Probe beacons of ``device_id`` (paths /probe/…), each on a new connection so that
    every HTTP process gets some, until a whole round is dropped as opted out. The
    processes add to the shared metrics every second; a probe taken before its process
    knew the objection is stored, under /probe/."""
    deadline, sent = time.monotonic() + timeout, 0
    while True:
        before = _dropped_as_opted_out(http)
        for _ in range(8):
            body = {
                "site": SITE,
                "url": f"https://example.com/probe/{sent}",
                "device_id": device_id,
                "consent": {"device_id": True},
            }
            assert httpx.post(f"{url}/collect", json=body, headers={"User-Agent": CHROME}).status_code == 202
            sent += 1
        round_ends = time.monotonic() + 3
        while time.monotonic() < round_ends:
            if _dropped_as_opted_out(http) - before >= 8:
                return
            time.sleep(0.2)
        assert time.monotonic() < deadline, f"the objection of {device_id} not applied by every process in {timeout} s"


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def server(tmp_path):
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    srv = BeaconServer(data_dir)
    yield srv.start()
    srv.kill()


BAD_BODIES = [
    ("invalid JSON", {"Content-Type": "application/json"}, b"{nope", 400),
    ("not an object", {"Content-Type": "application/json"}, b"[1]", 400),
    ("no subject", {"Content-Type": "application/json"}, b"{}", 400),
    ("two subjects", {"Content-Type": "application/json"}, b'{"device_id": "a", "mac": "aa:bb:cc:dd:ee:ff"}', 400),
    ("bad MAC", {"Content-Type": "application/json"}, b'{"mac": "not-a-mac"}', 400),
    ("ID not a string", {"Content-Type": "application/json"}, b'{"device_id": 42}', 400),
    ("empty ID", {"Content-Type": "application/json"}, b'{"device_id": ""}', 400),
    ("invalid UTF-8", {"Content-Type": "application/json"}, b'{"device_id": "\xff"}', 400),
    ("form post", {"Content-Type": "application/x-www-form-urlencoded"}, b"device_id=a", 415),
    ("oversize", {"Content-Type": "application/json"}, b'{"device_id": "' + b"a" * 5000 + b'"}', 413),
]


def test_tokens_are_required_and_roles_and_bodies_checked(server):
    data_dir = server.data_dir
    privacy, _ = create(data_dir, "--role", "privacy")
    admin, _ = create(data_dir, "--role", "admin")
    analyst, _ = create(data_dir, "--role", "analyst")
    one_site, _ = create(data_dir, "--role", "privacy", "--site", SITE)
    body = {"device_id": "nobody"}
    with httpx.Client(base_url=server.url) as http:
        for route in ("export", "erase", "optout"):
            missing = http.post(API + route, json=body)
            assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
            assert http.post(API + route, json=body, headers={"Authorization": f"Basic {privacy}"}).status_code == 401
            assert http.post(API + route, json=body, headers=_auth(privacy + "x")).status_code == 401
            assert http.post(API + route, json=body, headers=_auth(analyst)).status_code == 403
            assert http.post(API + route, json=body, headers=_auth(one_site)).status_code == 403
            assert http.post(API + route, json=body, headers=_auth(admin)).status_code == 200
        for label, headers, content, status in BAD_BODIES:
            r = http.post(API + "export", content=content, headers=headers | _auth(privacy))
            assert r.status_code == status, f"{label}: {r.status_code} {r.text}"
            assert "error" in r.json(), label
        assert http.post(API + "export?format=xml", json=body, headers=_auth(privacy)).status_code == 400
        assert http.get(API + "export", headers=_auth(privacy)).status_code == 405
        assert http.post(API + "nope", json=body, headers=_auth(privacy)).status_code == 404
        assert (
            http.post(
                "/collect", json={"site": SITE, "url": "https://example.com/"}, headers={"User-Agent": CHROME}
            ).status_code
            == 202
        )  # the collector is unaffected
        metrics = http.get("/metrics").text
    assert re.search(r'beacon_api_requests_total\{route="privacy_export",status="401"\} 3\.0', metrics)
    assert re.search(r'beacon_api_requests_total\{route="privacy_erase",status="403"\} 2\.0', metrics)
    assert re.search(r'beacon_api_requests_total\{route="unknown",status="404"\} 1\.0', metrics)
    assert 'status="5' not in metrics
    assert server.stop()
    log = server.log.read_text()
    assert privacy not in log and admin not in log and "nobody" not in log


def test_export_over_http_is_complete_and_matches_the_cli(server, tmp_path):
    token, token_id = create(server.data_dir, "--role", "privacy")
    with httpx.Client(base_url=server.url, headers=_auth(token)) as http:
        _load(http)
        _wait_rows(server, 500)
        r = http.post(API + "export", json={"device_id": SUBJECT})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        exported = r.json()
        as_csv = http.post(API + "export?format=csv", json={"device_id": SUBJECT})
        as_jsonl = http.post(API + "export?format=jsonl", json={"device_id": SUBJECT})
    rows = exported["rows"]["events"]
    assert sorted(r["path"] for r in rows) == sorted(f"/p/{i}" for i in range(500) if i % 50 == 7)
    assert exported["manifest"]["tables"]["events"]["rows"] == 10 and set(rows[0]) <= set(
        exported["manifest"]["fields"]
    )
    assert as_jsonl.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in as_jsonl.text.splitlines()] == rows
    assert as_csv.headers["x-beacon-rows"] == "10"
    assert sorted(r["path"] for r in csv.DictReader(io.StringIO(as_csv.text))) == sorted(r["path"] for r in rows)

    out = tmp_path / "cli-export"
    cli(
        "privacy",
        "export",
        "--data-dir",
        str(server.data_dir),
        "--device-id",
        SUBJECT,
        "--out",
        str(out),
        "--actor",
        "officer",
    )
    assert [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()] == rows
    assert json.loads((out / "manifest.json").read_text()) == exported["manifest"] | {
        "tables": {
            "events": {"rows": 10, "files": ["events.jsonl", "events.csv"]},
            "dead_letters": {"rows": 0, "files": ["dead_letters.jsonl", "dead_letters.csv"]},
        }
    }

    log = server.query("SELECT action, subject, rows, actor FROM beacon.privacy_log ORDER BY ts")
    key = (server.data_dir / "id.key").read_bytes().strip()
    assert [(r["action"], r["rows"], r["actor"]) for r in log] == [("export", 10, f"api token {token_id}")] * 3 + [
        ("export", 10, "officer")
    ]
    assert {r["subject"] for r in log} == {pseudonymise(SUBJECT, key)}
    assert server.stop()
    assert SUBJECT not in server.log.read_text() and token not in server.log.read_text()


def test_erase_over_http_removes_exactly_the_subject_and_stops_collection(server):
    token, token_id = create(server.data_dir, "--role", "privacy")
    with httpx.Client(base_url=server.url) as http:
        _load(http)
        _wait_rows(server, 500)
        r = http.post(API + "erase", json={"device_id": SUBJECT}, headers=_auth(token))
        assert r.status_code == 200 and r.json() == {"erased_rows": 10, "opted_out": True}
        _send(http, range(1000, 1010), lambda i: SUBJECT)  # objected: dropped
        _send(http, range(2000, 2005))
    assert server.stop()
    paths = {r["path"] for r in server.query("SELECT path FROM beacon.events")}
    assert paths == {f"/p/{i}" for i in range(500) if i % 50 != 7} | {f"/p/{i}" for i in range(2000, 2005)}
    log = server.query("SELECT action, rows, actor FROM beacon.privacy_log ORDER BY ts")
    assert sorted((r["action"], r["rows"]) for r in log) == [("erase", 10), ("optout", 0)]
    assert {r["actor"] for r in log} == {f"api token {token_id}"}
    assert SUBJECT not in json.dumps(server.query("SELECT * FROM beacon.privacy_log"))


def test_optout_over_http_then_nothing_more_from_that_device(server):
    token, token_id = create(server.data_dir, "--role", "admin")
    mac = "AA-BB-CC-00-11-22"
    with httpx.Client(base_url=server.url, headers=_auth(token)) as http:
        assert _send(http, range(0, 5), lambda i: SUBJECT) == 5
        assert http.post(API + "optout", json={"device_id": SUBJECT}).json() == {"opted_out": True}
        assert http.post(API + "optout", json={"mac": mac}).status_code == 200
        _send(http, range(5, 15), lambda i: SUBJECT)
        body = {"site": SITE, "url": "https://example.com/m", "mac": "aa:bb:cc:00:11:22", "consent": {"mac": True}}
        http.post("/collect", json=body, headers={"User-Agent": CHROME})
        _send(http, range(15, 20))
    assert server.stop()
    assert sorted(r["path"] for r in server.query("SELECT path FROM beacon.events")) == sorted(
        f"/p/{i}" for i in [*range(5), *range(15, 20)]
    )
    log = server.query("SELECT action, actor FROM beacon.privacy_log")
    assert log == [{"action": "optout", "actor": f"api token {token_id}"}] * 2
    stored = json.dumps(server.query("SELECT * FROM beacon.optouts"))
    assert SUBJECT not in stored and "aa:bb:cc:00:11:22" not in stored


def test_the_api_in_every_http_process_of_workers_2(tmp_path):
    """--workers 2: each HTTP process serves the API through the owner's store."""
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    with BeaconServer(data_dir, "--workers", "2") as srv, httpx.Client(base_url=srv.url) as http:
        token, token_id = create(data_dir, "--role", "privacy")
        _load(http)

        def until(status: int, call, seconds: float = 3) -> list[httpx.Response]:
            """Answers of several calls (spread over both processes) once all are ``status``."""
            deadline = time.monotonic() + seconds
            while True:
                answers = [call() for _ in range(6)]
                if {a.status_code for a in answers} == {status}:
                    return answers
                assert time.monotonic() < deadline, [a.status_code for a in answers]
                time.sleep(0.1)

        _wait_rows(srv, 500)
        # Both processes know the new token (within their 1 s refresh) before the
        # exports, which are logged: an empty body is 400 once it is, and not logged.
        until(400, lambda: http.post(API + "optout", json={}, headers=_auth(token)))
        exports = until(200, lambda: http.post(API + "export", json={"device_id": SUBJECT}, headers=_auth(token)))
        assert all(len(e.json()["rows"]["events"]) == 10 for e in exports)
        assert http.post(API + "optout", json={"device_id": "late-objector"}, headers=_auth(token)).status_code == 200
        _wait_objection_everywhere(srv.url, http, "late-objector")  # the other process reloads them every second
        for start in range(3000, 3040, 2):
            _send(http, range(start, start + 2), lambda i: "late-objector")
        r = http.post(API + "erase", json={"device_id": SUBJECT}, headers=_auth(token))
        assert r.json() == {"erased_rows": 10, "opted_out": True}

        cli("tokens", "revoke", "--data-dir", str(data_dir), token_id)
        # An empty body: 400 while the token is accepted, 401 once revoked; nothing is recorded.
        until(401, lambda: http.post(API + "optout", json={}, headers=_auth(token)))
        assert srv.stop()
    assert srv.query("SELECT count() AS n FROM beacon.events WHERE path NOT LIKE '/probe/%'") == [{"n": 490}]
    log = srv.query("SELECT action, count() AS n FROM beacon.privacy_log GROUP BY action ORDER BY action")
    assert log == [{"action": "erase", "n": 1}, {"action": "export", "n": 6}, {"action": "optout", "n": 2}]
