"""Dead letters in the Kafka deployment, on a real broker: a row the store refuses
goes to beacons.dlq while the rest of its batch is stored, `beacon dlq` lists and
shows it clean, and replays it once after the fix; a raw record the filter cannot
read is listed but never shown, nor replayed."""

from __future__ import annotations

import json
import os
import time
import warnings

import httpx
import pytest

from tests.kafka.pipeline import CHROME, SITE, Deployment, client_ip
from tests.kafka.store import start_store
from tests.server import cli

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

REFUSED_PATH = "/refused-by-the-store"


def test_refused_rows_go_to_the_dlq_topic_and_are_replayed_once(tmp_path):
    d = Deployment(tmp_path, partitions=2)
    try:
        start_store(d)
        d.worker().start()
        collector = d.collector().start()
        kafka = ["--kafka", d.bootstrap, "--topic-dlq", d.topics["dlq"]]
        cli(
            "query",
            "--write",
            "--data-dir",
            str(d.data_dir),
            f"ALTER TABLE beacon.events ADD CONSTRAINT test_refused CHECK path != '{REFUSED_PATH}'",
        )

        paths = [REFUSED_PATH if i % 40 == 3 else f"/p/{i}" for i in range(400)]
        refused = paths.count(REFUSED_PATH)
        with httpx.Client(timeout=10) as http:
            for start in range(0, len(paths), 20):
                body = [
                    {"site": SITE, "url": f"https://{SITE}{path}?email=me@mail.com"}
                    for path in paths[start : start + 20]
                ]
                answer = http.post(
                    f"{collector.url}/collect",
                    content=json.dumps(body),
                    headers={"User-Agent": CHROME, "Content-Type": "text/plain", "X-Forwarded-For": client_ip(start)},
                )
                assert answer.json() == {"accepted": 20}
        assert d.wait_stored(len(paths) - refused) == {"n": len(paths) - refused, "u": len(paths) - refused}

        # A record the privacy filter cannot read: it holds raw data, so it is never shown.
        producer = KafkaProducer(bootstrap_servers=d.bootstrap)
        producer.send(d.topics["raw"], key=b"not-a-batch", value=b'{"ip": "198.51.100.99", "garbage')
        producer.flush()
        producer.close()
        listed = _until_listed(kafka, {"constraint_violated": refused, "undecodable": 1})
        assert listed[0] == "reason\tletters\toldest\tnewest"

        shown = [json.loads(line) for line in cli("dlq", "show", *kafka, "--limit", "100").stdout.splitlines()]
        rows = [s["row"] for s in shown if s["reason"] == "constraint_violated"]
        assert len(rows) == refused and {r["path"] for r in rows} == {REFUSED_PATH}
        assert {r["ip_truncated"] for r in rows} <= {"203.0.113.0", "198.51.100.0", "2001:db8:1::"}
        (unreadable,) = [s for s in shown if s["reason"] == "undecodable"]
        assert set(unreadable) == {"id", "refused_at", "reason", "error", "batch_id", "raw_bytes"}
        text = json.dumps(shown)
        assert "198.51.100.99" not in text and "me@mail.com" not in text
        assert not any(client_ip(start) in text for start in range(0, len(paths), 20))

        not_now = cli(
            "dlq",
            "replay",
            *kafka,
            "--reason",
            "undecodable",
            "--topic-raw",
            d.topics["raw"],
            "--topic-clean",
            d.topics["clean"],
        )
        assert "not replayable 1" in not_now.stdout
        cli("query", "--write", "--data-dir", str(d.data_dir), "ALTER TABLE beacon.events DROP CONSTRAINT test_refused")
        for _ in range(2):  # the second replay sends them again: the sink stores none twice
            replayed = cli(
                "dlq",
                "replay",
                *kafka,
                "--reason",
                "constraint_violated",
                "--topic-raw",
                d.topics["raw"],
                "--topic-clean",
                d.topics["clean"],
            )
            assert f"sent {refused} letter(s) back" in replayed.stdout
            assert d.wait_stored(len(paths)) == {"n": len(paths), "u": len(paths)}
        assert d.stored(f"SELECT count() AS r FROM beacon.events WHERE path = '{REFUSED_PATH}'") == [{"r": refused}]
    finally:
        d.close()


def _until_listed(kafka: list[str], expected: dict[str, int], timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = cli("dlq", "list", *kafka).stdout.splitlines()
        if {line.split("\t")[0]: int(line.split("\t")[1]) for line in lines[1:]} == expected:
            return lines
        assert time.monotonic() < deadline, lines
        time.sleep(0.5)
