"""A Kafka collector killed (SIGKILL) under load: every beacon it answered 202 was in
its spool before the answer, so the restarted collector delivers it, and the
pipeline stores it exactly once (issue 27). The spool holds raw beacons: once Kafka
has acknowledged them, they leave the disk."""

from __future__ import annotations

import os

import pytest

from tests.crash_load import CrashLoad, assert_stored_exactly_once
from tests.faults import wait_for
from tests.kafka.pipeline import SITE, Deployment

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

# One client address, not the collector's own (127.0.0.1 is its trusted proxy).
HEADERS = {"X-Forwarded-For": "203.0.113.9"}


def test_a_collector_killed_under_load_loses_no_acknowledged_beacon(tmp_path):
    d = Deployment(tmp_path, partitions=3)
    spool = tmp_path / "spool"
    try:
        d.store().start()
        d.worker().start()
        collector = d.collector(spool_dir=spool).start()
        load = CrashLoad(collector.url, site=SITE, headers=HEADERS).start()
        try:
            wait_for(lambda: len(load.acknowledged) >= 3_000, 60, "3,000 beacons acknowledged")
            collector.kill()  # SIGKILL: no flush of the micro-batch, no spool delivery
        finally:
            load.stop()
        restarted = d.collector(spool_dir=spool).start()
        assert restarted.stop() == 0, restarted.tail()  # delivers the spool, then exits
        assert "batches kept in the spool" not in restarted.log.read_text(), restarted.tail()
        assert_stored_exactly_once(d.stored_paths(), load)
        leftover = [p.name for p in spool.glob("*.seg") if p.stat().st_size]
        assert not leftover, f"raw beacons stayed on disk after Kafka acknowledged them: {leftover}"
    finally:
        d.close()


def test_the_spool_lets_go_of_raw_beacons_soon_after_kafka_has_them(tmp_path):
    """While the collector runs: the records Kafka acknowledged leave the disk within
    a few seconds (a segment a second, deleted once acknowledged), not when a 64 MiB
    segment fills."""
    d = Deployment(tmp_path, partitions=3)
    spool = tmp_path / "spool"
    try:
        collector = d.collector(spool_dir=spool).start()
        load = CrashLoad(collector.url, site=SITE, headers=HEADERS, clients=2).start()
        try:
            wait_for(lambda: len(load.acknowledged) >= 500, 60, "500 beacons acknowledged")
        finally:
            load.stop()
        assert not load.in_doubt, "the collector failed to answer"
        wait_for(
            lambda: not any(p.stat().st_size for p in spool.glob("*.seg")),
            10,
            "the acknowledged records deleted from the spool",
        )
    finally:
        d.close()
