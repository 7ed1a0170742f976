"""The Kafka deployment on a real broker: collector → beacons.raw → Faust privacy
filter → beacons.clean → ClickHouse (the chDB store of `beacon serve --kafka`)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
import warnings

import httpx
import pytest

from tests.faults import wait_for
from tests.kafka.pipeline import BOOTSTRAP, Deployment, client_ip, send_beacons
from tests.server import cli, free_port

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer

N = 10_000
LOCAL_SH = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "kafka", "local.sh")


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.close()


def _clean_topic_text(d: Deployment) -> str:
    consumer = KafkaConsumer(
        d.topics["clean"],
        bootstrap_servers=d.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return "\n".join(m.value.decode() for m in consumer)
    finally:
        consumer.close()


def test_ten_thousand_beacons_arrive_once_without_raw_ips(deployment):
    d = deployment
    d.store().start()
    worker, collector = d.worker().start(), d.collector().start()
    assert send_beacons(collector.url, range(N)) == N
    assert d.wait_stored(N) == {"n": N, "u": N}
    paths = d.stored("SELECT count(DISTINCT path) AS p, countIf(ip_truncated = '') AS no_ip FROM beacon.events")[0]
    assert paths == {"p": N, "no_ip": 0}

    clean = _clean_topic_text(d)
    assert clean.count('"event_id"') == N
    for i in range(0, N, 7):  # every address sent: none past the worker
        ip = client_ip(i)
        assert not re.search(rf'"{re.escape(ip)}"', clean), ip
    stored = d.stored("SELECT DISTINCT ip_truncated AS ip FROM beacon.events")
    assert {r["ip"] for r in stored} <= {"203.0.113.0", "198.51.100.0", "2001:db8:1::"}
    # SIGTERM: both shut down cleanly (exit status 0), having flushed what they held.
    assert (collector.stop(), worker.stop()) == (0, 0)


def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(deployment):
    d = deployment
    d.store().start()
    collector = d.collector().start()
    worker = d.worker().start()
    # ~10 s of steady load; the worker dies a quarter of the way through it.
    sender = threading.Thread(target=send_beacons, args=(collector.url, range(N)), kwargs={"threads": 1, "pause": 0.01})
    sender.start()
    deadline = time.monotonic() + 60
    while d.stored()[0]["n"] < N // 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    worker.kill()  # SIGKILL: no flush, no commit
    assert sender.is_alive(), "the load finished before the kill: nothing was tested"
    d.worker("worker-restarted").start()
    sender.join()
    assert d.wait_stored(N, timeout=180) == {"n": N, "u": N}
    assert d.stored("SELECT count(DISTINCT path) AS p FROM beacon.events")[0] == {"p": N}


def test_the_collector_spools_while_the_broker_is_down(tmp_path):
    """A broker of its own (stopping the shared one would disturb other tests)."""
    port = free_port()
    env = os.environ | {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
    }

    def broker(action: str) -> None:
        done = subprocess.run(["bash", LOCAL_SH, action], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"local.sh {action} failed:\n{done.stdout}\n{done.stderr}"

    broker("start")
    d = Deployment(tmp_path, bootstrap=f"127.0.0.1:{port}", partitions=3)
    try:
        d.store().start()
        d.worker().start()
        collector = d.collector().start()
        assert send_beacons(collector.url, range(0, 2000)) == 2000
        d.wait_stored(2000)
        broker("stop")
        # Kafka is gone: the collector still answers 202 and keeps the beacons on disk.
        assert send_beacons(collector.url, range(2000, 5000)) == 3000
        metrics = httpx.get(f"{collector.url}/metrics").text
        assert float(re.search(r"^beacon_collector_spool_bytes (\S+)", metrics, re.M).group(1)) > 0
        time.sleep(2)
        broker("start")
        assert d.wait_stored(5000, timeout=180) == {"n": 5000, "u": 5000}
    finally:
        d.close()
        broker("stop")


def test_two_workers_share_the_partitions_and_a_joining_worker_loses_nothing(deployment):
    d = deployment
    d.store().start()
    collector = d.collector().start()
    first = d.worker("worker-a").start()
    assert send_beacons(collector.url, range(0, N // 2)) == N // 2
    second = d.worker("worker-b").start()  # joins: the group rebalances
    # The second half only once the rebalance is over: each worker owns raw partitions.
    wait_for(lambda: _shared(_owned_raw(first, d), _owned_raw(second, d)), 60, "the workers share the raw partitions")
    assert send_beacons(collector.url, range(N // 2, N)) == N // 2
    assert d.wait_stored(N, timeout=180) == {"n": N, "u": N}
    counts = [_filtered(w) for w in (first, second)]
    assert all(c > 0 for c in counts), f"a worker got no partitions: {counts}"
    assert sum(counts) >= N

    # beacon_consumer_lag: between them the two report every raw partition, each
    # owned by one of them, and all caught up once everything is stored.
    raw = d.topics["raw"]
    deadline = time.monotonic() + 20
    while True:
        lags = [{p: v for (t, p), v in _lag(w).items() if t == raw} for w in (first, second)]
        if (
            set(lags[0]) | set(lags[1]) == {str(p) for p in range(6)}
            and not set(lags[0]) & set(lags[1])
            and all(v == 0 for lag in lags for v in lag.values())
        ):
            break
        assert time.monotonic() < deadline, f"lag not reported or not caught up: {lags}"
        time.sleep(1)


def _lag(worker) -> dict[tuple[str, str], float]:
    text = httpx.get(worker.metrics_url).text
    found = re.findall(r'^beacon_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)', text, re.M)
    return {(topic, partition): float(value) for partition, topic, value in found}


def _owned_raw(worker, d: Deployment) -> set[str]:
    return {p for (t, p) in _lag(worker) if t == d.topics["raw"]}


def _shared(a: set[str], b: set[str]) -> bool:
    return bool(a) and bool(b) and not a & b and a | b == {str(p) for p in range(6)}


def _filtered(worker) -> float:
    text = httpx.get(worker.metrics_url).text
    return float(re.search(r"^beacon_worker_events_filtered_total (\S+)", text, re.M).group(1))


def test_a_worker_refuses_to_start_on_missing_or_mismatched_topics(tmp_path):
    tag = uuid.uuid4().hex[:8]
    names = {kind: f"r{tag}.{kind}" for kind in ("raw", "clean", "dlq", "requests", "salts")}
    args = [a for kind, name in names.items() for a in (f"--topic-{kind}", name)]
    worker = [
        "worker",
        "--kafka",
        BOOTSTRAP,
        "--group",
        f"g{tag}",
        "--id-key",
        "k",
        "--clickhouse",
        f"chdb://{tmp_path}/ch",
        *args,
    ]

    # No objections or salts topic: every worker must read them, so it does not start.
    cli("topics", "--kafka", BOOTSTRAP, "--partitions", "6", *args[:6])
    refused = cli(*worker, check=False)
    assert refused.returncode != 0
    assert f"topics missing: {names['requests']}, {names['salts']}" in refused.stderr + refused.stdout

    # Sources with different partition counts (raw 6, clean 3): Faust's own topics
    # would disagree with one of them.
    cli("topics", "--kafka", BOOTSTRAP, "--partitions", "6", *args[6:])
    clean3 = [a if a != names["clean"] else f"{names['clean']}3" for a in worker]
    cli(
        "topics",
        "--kafka",
        BOOTSTRAP,
        "--partitions",
        "3",
        "--topic-clean",
        f"{names['clean']}3",
        "--topic-raw",
        f"r{tag}.raw3",
        "--topic-dlq",
        f"r{tag}.dlq3",
        "--topic-requests",
        names["requests"],
        "--topic-salts",
        names["salts"],
        check=False,
    )
    refused = cli(*clean3, check=False)
    assert refused.returncode != 0
    assert "source topics must have equal partition counts" in refused.stderr + refused.stdout
