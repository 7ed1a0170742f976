"""The privacy API of `beacon serve --kafka` (the store owner): an erasure also
publishes the objection to privacy.requests, which every worker follows."""
from __future__ import annotations

import os
import warnings

import httpx
import pytest

from streams.steps import pseudonymise
from tests.kafka.pipeline import Deployment, Process
from tests.server import cli, free_port

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer


def test_an_erasure_over_http_publishes_the_objection(tmp_path):
    d = Deployment(tmp_path, partitions=1)
    port = free_port()
    d.processes.append(Process("store", [
        "serve", "--kafka", d.bootstrap, "--data-dir", str(d.data_dir), "--port", str(port), "--group", d.group,
        "--id-key", "test-key", "--topic-clean", d.topics["clean"], "--topic-requests", d.topics["requests"],
    ], tmp_path, ready_url=f"http://127.0.0.1:{port}/readyz").start())
    try:
        result = cli("tokens", "create", "--data-dir", str(d.data_dir), "--role", "privacy")
        token, token_id = result.stdout.strip(), result.stderr.split("created token ", 1)[1].split()[0]
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/privacy/erase", json={"device_id": "kafka-subject"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200 and r.json() == {"erased_rows": 0, "opted_out": True}
        consumer = KafkaConsumer(d.topics["requests"], bootstrap_servers=d.bootstrap, auto_offset_reset="earliest",
                                 consumer_timeout_ms=5000, enable_auto_commit=False)
        keys = {m.key.decode() for m in consumer}
        consumer.close()
        assert keys == {pseudonymise("kafka-subject", b"test-key")}
        log = d.stored("SELECT action, actor FROM beacon.privacy_log ORDER BY action")
        assert log == [{"action": "erase", "actor": f"api token {token_id}"},
                       {"action": "optout", "actor": f"api token {token_id}"}]
    finally:
        d.close()
