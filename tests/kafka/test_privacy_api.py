"""The privacy API of `beacon serve --kafka` (the store owner): an erasure also
publishes the objection to privacy.requests, which every worker follows."""

from __future__ import annotations

import os
import warnings

import httpx
import pytest

from streams.steps import pseudonymise
from tests.faults import wait_for
from tests.kafka.pipeline import CHROME, SITE, Deployment, Process
from tests.kafka.test_privacy import objections_loaded
from tests.server import cli, free_port

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer


def test_an_erasure_over_http_removes_the_rows_and_stops_the_subject_in_every_worker(tmp_path):
    d = Deployment(tmp_path, partitions=1)
    port = free_port()
    d.processes.append(
        Process(
            "store",
            [
                "serve",
                "--kafka",
                d.bootstrap,
                "--data-dir",
                str(d.data_dir),
                "--port",
                str(port),
                "--group",
                d.group,
                "--id-key",
                "test-key",
                "--topic-clean",
                d.topics["clean"],
                "--topic-requests",
                d.topics["requests"],
            ],
            tmp_path,
            ready_url=f"http://127.0.0.1:{port}/readyz",
        ).start()
    )
    try:
        worker = d.worker().start()
        collector = d.collector().start()
        consented = {"analytics": True, "device_id": True}

        def send(path: str, device: str) -> None:
            r = httpx.post(
                f"{collector.url}/collect",
                headers={"User-Agent": CHROME},
                json={"site": SITE, "url": f"https://example.com{path}", "device_id": device, "consent": consented},
            )
            assert r.status_code == 202

        for i in range(5):
            send(f"/before/{i}", "kafka-subject")
            send(f"/other/{i}", "someone-else")
        d.wait_stored(10)

        result = cli("tokens", "create", "--data-dir", str(d.data_dir), "--role", "privacy")
        token, token_id = result.stdout.strip(), result.stderr.split("created token ", 1)[1].split()[0]
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/privacy/erase",
            json={"device_id": "kafka-subject"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json() == {"erased_rows": 5, "opted_out": True}

        consumer = KafkaConsumer(
            d.topics["requests"],
            bootstrap_servers=d.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
            enable_auto_commit=False,
        )
        keys = {m.key.decode() for m in consumer}
        consumer.close()
        subject = pseudonymise("kafka-subject", b"test-key")
        assert keys == {subject}
        # The worker follows privacy.requests: it holds the objection before the beacons.
        wait_for(lambda: objections_loaded(worker) >= 1, 30, "the worker holds the objection")
        for i in range(5):
            send(f"/after/{i}", "kafka-subject")
            send(f"/other-after/{i}", "someone-else")
        d.wait_stored(10)  # the 5 earlier and the 5 later beacons of someone else
        paths = {row["path"] for row in d.stored("SELECT path FROM beacon.events")}
        assert paths == {f"/other/{i}" for i in range(5)} | {f"/other-after/{i}" for i in range(5)}
        log = d.stored("SELECT action, actor FROM beacon.privacy_log ORDER BY action")
        assert log == [
            {"action": "erase", "actor": f"api token {token_id}"},
            {"action": "optout", "actor": f"api token {token_id}"},
        ]
    finally:
        d.close()
