"""The privacy promises in the Kafka deployment, on the real broker: collector →
beacons.raw → two Faust workers (privacy filter, visitor hash with salts shared
through the salts topic) → beacons.clean → the chDB store of `beacon serve --kafka`.

One deployment serves the whole module (starting two workers takes a while), but no
test depends on another: each sends the beacons, days and objections it looks at,
under paths of its own, so each passes alone and in any order."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from schemas.events import Beacon, RawEvent, RequestContext
from streams.records import RawBatch, encode_raw_batch
from streams.steps import pseudonymise, subject_pseudonyms
from tests.faults import wait_for
from tests.kafka.pipeline import CHROME, SITE, ZONE, ZONED_SITE, Deployment
from tests.server import cli

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer

KEY = b"test-key"  # the workers' --id-key (tests/kafka/pipeline.py)
DAY = 86400
VISITOR_IP, OTHER_IP = "203.0.113.77", "198.51.100.23"
UTC_SITE = "utc.example"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("privacy"))
    try:
        deployment.store().start()
        deployment.collector_process = deployment.collector().start()
        deployment.workers = [deployment.worker("worker-a").start(), deployment.worker("worker-b").start()]
        # Both workers own raw partitions before any test counts what each filtered.
        wait_for(lambda: group_settled(deployment), 60, "the two workers share the raw partitions")
        yield deployment
    finally:
        deployment.close()


def raw_partitions_owned(worker, d: Deployment) -> set[str]:
    """The raw topic's partitions whose lag the worker reports: those it owns."""
    text = httpx.get(worker.metrics_url).text
    found = re.findall(r'^beacon_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} \S+', text, re.M)
    return {partition for partition, topic in found if topic == d.topics["raw"]}


def group_settled(d: Deployment) -> bool:
    owned = [raw_partitions_owned(w, d) for w in d.workers]
    return all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {str(p) for p in range(6)}


def objections_loaded(worker) -> int:
    """How many objections the worker says it holds (its last "objections loaded" log)."""
    lines = [line for line in worker.log.read_text(errors="replace").splitlines() if '"objections loaded"' in line]
    return max((json.loads(line)["total"] for line in lines), default=0)


def objections_published(d: Deployment) -> int:
    consumer = KafkaConsumer(
        d.topics["requests"],
        bootstrap_servers=d.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return len({m.key for m in consumer if m.key and m.value})
    finally:
        consumer.close()


def post(d: Deployment, body, ip: str = VISITOR_IP, **headers) -> None:
    headers = {"User-Agent": CHROME, "Content-Type": "text/plain", "X-Forwarded-For": ip} | headers
    r = httpx.post(f"{d.collector_process.url}/collect", content=json.dumps(body), headers=headers, timeout=30)
    assert r.status_code == 202, r.text


def rows(d: Deployment, where: str, columns: str = "*") -> list[dict]:
    return d.stored(f"SELECT {columns} FROM beacon.events WHERE {where} ORDER BY path")


def wait_rows(d: Deployment, where: str, n: int, timeout: float = 120, columns: str = "*") -> list[dict]:
    """The rows once there are ``n`` and the pipeline has caught up (``Deployment.caught_up``):
    anything beyond n (a duplicate, an event that should not be) is stored by then."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        if d.caught_up():
            if (count := d.stored(f"SELECT count() AS n FROM beacon.events WHERE {where}")[0]["n"]) >= n:
                return rows(d, where, columns)
        time.sleep(0.5)
    raise AssertionError(f"{count} of {n} rows WHERE {where} after {timeout}s")


def metric(worker, name: str, label: str = "") -> float:
    text = httpx.get(worker.metrics_url).text
    match = re.search(rf"^{re.escape(name)}{re.escape(label)} (\S+)", text, re.M)
    return float(match.group(1)) if match else 0.0


def filtered_by_each(d: Deployment) -> list[float]:
    return [metric(w, "beacon_worker_events_filtered_total") for w in d.workers]


# --- the visitor hash -----------------------------------------------------------------


def test_two_workers_hash_a_visitor_with_the_same_salt(d):
    before = filtered_by_each(d)
    for i in range(60):  # one request each: many micro-batches, spread over the 6 partitions
        post(d, {"site": SITE, "url": f"https://example.com/v/a/{i}"})
    for i in range(20):
        post(d, {"site": SITE, "url": f"https://example.com/v/b/{i}"}, ip=OTHER_IP)
    wait_rows(d, "path LIKE '/v/%'", 80)
    after = filtered_by_each(d)
    assert all(a > b for a, b in zip(after, before)), f"a worker filtered none of them: {before} → {after}"

    a = {r["visitor_id"] for r in rows(d, "path LIKE '/v/a/%'", "visitor_id")}
    b = {r["visitor_id"] for r in rows(d, "path LIKE '/v/b/%'", "visitor_id")}
    assert len(a) == 1 and len(b) == 1 and 0 not in a | b  # whichever worker hashed them
    assert a != b


def test_another_day_gets_another_salt_and_a_past_day_without_one_gets_no_hash(d):
    """Days injected through the raw topic's received_at (the collector stamps now)."""
    now = time.time()
    unhashed_before = sum(metric(w, "beacon_filter_actions_total", '{action="visitor_unhashed"}') for w in d.workers)
    for i in range(6):
        post(d, {"site": SITE, "url": f"https://example.com/day/collected/{i}"})
    with producer(d) as raw:
        for i in range(12):  # several records: both workers see tomorrow's beacons
            for label, ts in (("today", now), ("tomorrow", now + DAY), ("yesterday", now - DAY)):
                send_raw(raw, d, f"/day/{label}/{i}", ts)
    stored = wait_rows(d, "path LIKE '/day/%'", 42)
    hashes = {
        label: {r["visitor_id"] for r in stored if r["path"].startswith(f"/day/{label}/")}
        for label in ("collected", "today", "tomorrow", "yesterday")
    }
    today = hashes["collected"]
    assert len(today) == 1 and 0 not in today
    assert hashes["today"] == today  # the same visitor, today, through either path
    assert len(hashes["tomorrow"]) == 1 and hashes["tomorrow"] != today and 0 not in hashes["tomorrow"]
    # Nobody made a salt yesterday, and none is made for a past day: no hash, counted.
    assert hashes["yesterday"] == {0}
    unhashed = sum(metric(w, "beacon_filter_actions_total", '{action="visitor_unhashed"}') for w in d.workers)
    assert unhashed - unhashed_before == 12


# --- sites in their own time zones ------------------------------------------------------

NIGHT_IP = "192.0.2.45"  # one visitor browsing across UTC midnight, on two sites


def test_a_site_in_toronto_is_hashed_and_counted_in_its_own_days(d):
    """The collector stamps the site's zone (``--site toronto.example=America/Toronto``);
    the workers salt the visitor per local day. One visitor browsing from 23:50 to
    00:10 UTC is one visitor and one visit in the Toronto site's day, and two of each
    in a UTC site's two days: through the store's Stats API."""
    for site, zone in ((ZONED_SITE, ZONE), (UTC_SITE, "UTC")):
        cli("sites", "add", site, "--timezone", zone, "--data-dir", str(d.data_dir))
    post(d, {"site": ZONED_SITE, "url": f"https://{ZONED_SITE}/zone/collected"})
    (row,) = wait_rows(d, "path = '/zone/collected'", 1, columns="path, toUnixTimestamp64Milli(ts) AS ms")
    collected = int(row["ms"]) / 1000
    midnight = (time.time() // DAY + 1) * DAY  # the next UTC midnight: its salts are made on demand
    with producer(d) as raw:
        send_raw(raw, d, "/zone/same-time/toronto", collected, ZONED_SITE, ZONE)
        send_raw(raw, d, "/zone/same-time/utc", collected, ZONED_SITE, "UTC")
        for label, ts in (("before", midnight - 600), ("after", midnight + 600)):
            send_raw(raw, d, f"/zone/night/{label}", ts, ZONED_SITE, ZONE, NIGHT_IP)
            send_raw(raw, d, f"/zone/night/{label}", ts, UTC_SITE, "UTC", NIGHT_IP)
    stored = wait_rows(d, "path LIKE '/zone/%'", 7, columns="site, path, visitor_id")
    ids = {(r["site"], r["path"]): int(r["visitor_id"]) for r in stored}
    now_hashed = [(ZONED_SITE, "/zone/collected"), (ZONED_SITE, "/zone/same-time/toronto")]
    if _local_day_began_the_utc_day_before(collected, ZONE):
        # Between UTC midnight and Toronto's, Toronto's day is hashed with the salt of
        # the UTC day before, which this deployment, started today, never made (nor
        # may it: docs/privacy.md, "No salt for a past day"). Its beacons are counted
        # unhashed; the UTC day's salt exists, so a beacon stamped UTC would be hashed.
        assert [ids[key] for key in now_hashed] == [0, 0]
        assert 0 not in [v for key, v in ids.items() if key not in now_hashed]
    else:
        assert 0 not in ids.values()
        # The collector stamped Toronto: the same visitor at the same time, hashed in
        # Toronto's day, is the same hash; hashed in the UTC day, another.
        assert ids[ZONED_SITE, "/zone/same-time/toronto"] == ids[ZONED_SITE, "/zone/collected"]
        assert ids[ZONED_SITE, "/zone/same-time/utc"] != ids[ZONED_SITE, "/zone/collected"]
    assert ids[ZONED_SITE, "/zone/night/before"] == ids[ZONED_SITE, "/zone/night/after"]
    assert ids[UTC_SITE, "/zone/night/before"] != ids[UTC_SITE, "/zone/night/after"]

    token = cli("tokens", "create", "--data-dir", str(d.data_dir), "--role", "analyst").stdout.strip()
    local_day = datetime.fromtimestamp(midnight, ZoneInfo(ZONE)).date()  # the evening before, in Toronto
    toronto = aggregate(
        d, token, ZONED_SITE, f"period=day&date={local_day}&filters=visit:entry_page==/zone/night/before"
    )
    assert toronto == {"visitors": 1, "visits": 1, "pageviews": 2}  # the visit goes on past UTC midnight
    first, second = (datetime.fromtimestamp(ts, timezone.utc).date() for ts in (midnight - DAY, midnight))
    assert aggregate(d, token, UTC_SITE, f"period=custom&date={first},{second}") == {
        "visitors": 2,
        "visits": 2,
        "pageviews": 2,
    }


def _local_day_began_the_utc_day_before(ts: float, zone: str) -> bool:
    """Whether the local day of ``ts`` in ``zone`` began in an earlier UTC day than ``ts``."""
    local = datetime.fromtimestamp(ts, ZoneInfo(zone))
    began = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)
    return began.date() < datetime.fromtimestamp(ts, timezone.utc).date()


def aggregate(d: Deployment, token: str, site: str, query: str) -> dict:
    r = httpx.get(
        f"{d.api_url}/api/v1/stats/aggregate?site_id={site}&metrics=visitors,visits,pageviews&{query}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {name: value["value"] for name, value in r.json()["results"].items()}


def producer(d: Deployment) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=d.bootstrap, acks="all")


def send_raw(
    raw: KafkaProducer,
    d: Deployment,
    path: str,
    received_at: float,
    site: str = SITE,
    zone: str = "UTC",
    ip: str = VISITOR_IP,
) -> None:
    """A raw record as a collector writes it: the time it received the beacon, and the
    zone of the site it was for."""
    batch_id = uuid.uuid4().hex
    event = RawEvent(
        uuid.uuid4().hex, Beacon(site, f"https://{site}{path}"), RequestContext(received_at, ip, CHROME), zone
    )
    raw.send(d.topics["raw"], key=batch_id.encode(), value=encode_raw_batch(RawBatch(batch_id, [event]))).get(
        timeout=30
    )


# --- consent, objection, data-subject requests, audit -------------------------------------


def test_identifiers_are_kept_only_with_their_consent_and_without_dnt_or_gpc(d):
    expected = {}
    for i in range(16):
        consent_device, consent_mac, dnt, gpc = (bool(i & bit) for bit in (1, 2, 4, 8))
        device, mac = f"matrix-device-{i:02d}", f"02:00:5e:00:00:{i:02x}"
        headers = ({"DNT": "1"} if dnt else {}) | ({"Sec-GPC": "1"} if gpc else {})
        post(
            d,
            {
                "site": SITE,
                "url": f"https://example.com/m/{i:02d}",
                "device_id": device,
                "mac": mac,
                "consent": {"analytics": True, "device_id": consent_device, "mac": consent_mac},
            },
            **headers,
        )
        kept = not (dnt or gpc)
        expected[f"/m/{i:02d}"] = (
            subject_pseudonyms(device, "", KEY)[0] if consent_device and kept else "",
            subject_pseudonyms("", mac, KEY)[0] if consent_mac and kept else "",
        )
    stored = wait_rows(d, "path LIKE '/m/%'", 16)
    assert {r["path"]: (r["device_id"], r["mac"]) for r in stored} == expected  # DNT/GPC drop IDs, not visits
    text = json.dumps(stored)
    assert "matrix-device" not in text and "02:00:5e" not in text  # raw IDs never
    assert all(r["visitor_id"] != 0 and r["ip_truncated"] == "203.0.113.0" for r in stored)


def test_an_objection_reaches_every_worker_and_stops_that_device(d):
    device, mac = "objecting-device-9", "AA-BB-CC-00-11-99"
    consented = {"analytics": True, "device_id": True, "mac": True}
    post(d, {"site": SITE, "url": "https://example.com/o/before", "device_id": device, "consent": consented})
    wait_rows(d, "path = '/o/before'", 1)
    for subject in ({"device_id": device}, {"mac": mac}):
        r = httpx.post(f"{d.collector_process.url}/optout", json=subject, headers={"User-Agent": CHROME})
        assert r.status_code == 202
    # Each worker follows privacy.requests: both hold every objection before the beacons.
    published = objections_published(d)
    assert published >= 2
    wait_for(
        lambda: all(objections_loaded(w) >= published for w in d.workers),
        30,
        f"both workers hold the {published} objections",
    )
    for i in range(10):  # many batches, so that both workers' partitions receive some
        post(
            d, {"site": SITE, "url": f"https://example.com/o/consented/{i}", "device_id": device, "consent": consented}
        )
        post(d, {"site": SITE, "url": f"https://example.com/o/unconsented/{i}", "device_id": device})
        post(
            d,
            {"site": SITE, "url": f"https://example.com/o/dnt/{i}", "device_id": device, "consent": consented},
            DNT="1",
        )
        post(
            d,
            {
                "site": SITE,
                "url": f"https://example.com/o/mac/{i}",
                "mac": mac.lower().replace("-", ":"),
                "consent": consented,
            },
        )
        post(
            d,
            {
                "site": SITE,
                "url": f"https://example.com/o/someone-else/{i}",
                "device_id": "another-device",
                "consent": consented,
            },
        )
    stored = wait_rows(d, "path LIKE '/o/%'", 11)
    assert sorted(r["path"] for r in stored) == ["/o/before"] + sorted(f"/o/someone-else/{i}" for i in range(10))
    assert all(w.proc.poll() is None for w in d.workers)


def test_export_then_erase_one_subject_among_ten_thousand_other_events(d, tmp_path):
    subject = "subject-device-0042"
    pseudonym = pseudonymise(subject, KEY)

    def send(i: int) -> None:
        body = [
            {
                "site": SITE,
                "url": f"https://example.com/x/{i * 50 + k}",
                "device_id": f"other-{(i * 50 + k) % 97}",
                "consent": {"device_id": True},
            }
            for k in range(50)
        ]
        post(d, body, ip=f"198.51.100.{i % 250 + 1}")
        if i % 10 == 0:  # the subject's 20 visits, spread among the others
            post(
                d,
                {
                    "site": SITE,
                    "url": f"https://example.com/x/subject/{i}",
                    "device_id": subject,
                    "consent": {"device_id": True},
                },
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(200)))
    wait_rows(d, "path LIKE '/x/%'", 10_020, timeout=180)
    data = [
        "--data-dir",
        str(d.data_dir),
        "--id-key",
        KEY.decode(),
        "--device-id",
        subject,
        "--actor",
        "privacy-officer",
    ]

    out = tmp_path / "export"
    assert "exported 20 row(s)" in cli("privacy", "export", *data, "--out", str(out)).stdout
    exported = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in exported) == sorted(f"/x/subject/{i}" for i in range(0, 200, 10))
    assert all(r["device_id"] == pseudonym for r in exported)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"]["events"]["rows"] == 20 and set(exported[0]) <= set(manifest["fields"])

    assert "erased 20 row(s)" in cli("privacy", "erase", *data).stdout
    assert d.stored(f"SELECT count() AS n FROM beacon.events WHERE device_id = '{pseudonym}'") == [{"n": 0}]
    assert d.stored("SELECT count() AS n FROM beacon.events WHERE path LIKE '/x/%'") == [{"n": 10_000}]
    log = d.stored(f"SELECT action, rows, actor FROM beacon.privacy_log WHERE subject = '{pseudonym}' ORDER BY ts")
    assert log == [
        {"action": "export", "rows": 20, "actor": "privacy-officer"},
        {"action": "erase", "rows": 20, "actor": "privacy-officer"},
    ]
    assert subject not in json.dumps(d.stored("SELECT * FROM beacon.privacy_log"))


def test_personal_data_in_urls_referrers_and_props_leaves_nothing_the_audit_flags(d):
    for i in range(40):
        ip = f"192.0.2.{i + 1}"
        mac = f"3c:22:fb:00:01:{i:02x}"
        advertising_id = str(uuid.UUID(int=i + 1))
        post(
            d,
            [
                {
                    "site": SITE,
                    "type": "event",
                    "name": f"signup user{i}@mail.com",
                    "url": f"https://example.com/a/{i}/user{i}@mail.com/{advertising_id}?utm_source=mail-{ip}&email=x{i}@mail.com",
                    "referrer": f"https://crm.example.net/contact/{ip}/{mac}?who=user{i}@mail.com",
                    "props": {
                        "contact": f"user{i}@mail.com",
                        "seen_ip": ip,
                        "hw": mac,
                        "adid": advertising_id,
                        f"key-{i}@mail.com": "v",
                    },
                    "device_id": advertising_id,
                    "mac": mac,
                }
            ],
            ip=ip,
        )
    stored = wait_rows(d, "path LIKE '/a/%'", 40)
    assert "@mail.com" not in json.dumps(stored)
    audit = cli("privacy", "audit", "--data-dir", str(d.data_dir), check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "no personal data found" in audit.stdout


def test_no_salt_is_logged_or_stored(d):
    now = time.time()
    with producer(d) as raw:  # today's and tomorrow's salts, used
        for i in range(6):
            send_raw(raw, d, f"/salt/today/{i}", now)
            send_raw(raw, d, f"/salt/tomorrow/{i}", now + DAY)
    hashed = {r["visitor_id"] for r in wait_rows(d, "path LIKE '/salt/%'", 12)}
    assert len(hashed) == 2 and 0 not in hashed
    salts = salt_values(d)
    assert len(salts) >= 2
    stored = json.dumps(d.stored("SELECT * FROM beacon.events")) + json.dumps(
        d.stored("SELECT * FROM beacon.privacy_log")
    )
    logs = "".join(p.log.read_text(errors="replace") for p in d.processes)
    assert "visitor salt adopted" in logs  # the workers do log about salts: the day, never the value
    for salt in salts:
        for form in (salt.hex(), base64.b64encode(salt).decode(), str(int.from_bytes(salt, "big"))):
            assert form not in stored and form not in logs


def salt_values(d: Deployment) -> set[bytes]:
    consumer = KafkaConsumer(
        d.topics["salts"],
        bootstrap_servers=d.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return {m.value for m in consumer if m.value}
    finally:
        consumer.close()
