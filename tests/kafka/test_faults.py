"""Faults injected into the Kafka deployment under a steady load: the collector's
spool disk fills, the broker restarts, the store's owner is killed.

What must hold through each: every beacon answered 2xx is stored exactly once, none
answered otherwise is stored, and the processes recover by themselves once the
cause is gone (a killed process: once it is started again). "Stored exactly once"
is only checked when nothing can be on its way any more: the load and the collector
stopped, and both consumer groups committed to the end of their topics
(``Deployment.stored_paths``). (The embedded server's disk filling:
tests/test_faults.py.)"""

from __future__ import annotations

import os
import re

import httpx
import pytest

from tests.faults import Acknowledged, exactly_once, fill, free_bytes, tmpfs, wait_for
from tests.kafka.pipeline import SITE, Deployment, LocalBroker, Process

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

# One client address, not the collector's own (127.0.0.1 is its trusted proxy).
HEADERS = {"X-Forwarded-For": "203.0.113.9"}


def _spool_bytes(collector: Process) -> float:
    text = httpx.get(f"{collector.url}/metrics", timeout=5).text
    return float(re.search(r"^beacon_collector_spool_bytes (\S+)", text, re.M).group(1))


def _more_acknowledged(load: Acknowledged, n: int, what: str, timeout: float = 20) -> None:
    """Wait until the load has ``n`` more beacons acknowledged than now."""
    target = len(load.acknowledged) + n
    wait_for(lambda: len(load.acknowledged) >= target, timeout, what)


def _stop_collector(collector: Process) -> None:
    """SIGTERM: it delivers its spool to Kafka before exiting, so that the raw topic is
    final (what ``Deployment.stored_paths`` needs)."""
    assert collector.stop() == 0, collector.tail()
    assert "batches kept in the spool" not in collector.log.read_text(), collector.tail()


def test_a_full_spool_disk_is_answered_503_and_the_collector_resumes_when_room_returns(tmp_path):
    """The collector's spool on a 16 MiB tmpfs; a file takes all its free room. The
    spool's next append finds no room: /collect answers 503 with Retry-After (the
    beacons stay with the client). Deleting the file is all it takes to accept again.

    While the file stays, the spool may still win some room back: the segment it
    closed at the first refusal is deleted once Kafka has it, so acceptance may come
    and go. Nothing is asserted about that, only that a refusal comes, refusals go on
    while the disk is full, and every 202 is stored once."""
    with tmpfs(tmp_path / "spool-disk", "16m") as disk:
        d = Deployment(tmp_path, partitions=2)
        try:
            d.store().start()
            d.worker().start()
            collector = d.collector(spool_dir=disk / "spool").start()
            load = Acknowledged(collector.url, site=SITE, headers=HEADERS).start()
            try:
                _more_acknowledged(load, 100, "beacons accepted before the fault")
                filler = fill(disk)
                assert free_bytes(disk) < 1 << 20

                refused = wait_for(lambda: load.refused, 20, "a 503 once the spool cannot append")[0]
                assert refused.headers["retry-after"] == "1" and "error" in refused.json()
                assert "the spool's disk is full" in collector.log.read_text()
                wait_for(lambda: len(load.refused) >= 20, 20, "the load refused while the disk stays full")

                filler.unlink()  # room again: no restart, no command
                wait_for(lambda: load.accepted_since_refusal >= 300, 30, "beacons accepted again")
                wait_for(
                    lambda: httpx.get(f"{collector.url}/readyz", timeout=5).status_code == 200,
                    15,
                    "the collector ready again",
                )
            finally:
                load.stop()
            assert all(r.headers["retry-after"] == "1" for r in load.refused)
            _stop_collector(collector)
            exactly_once(d.stored_paths(), load.acknowledged)
        finally:
            d.close()


def test_a_broker_restarted_under_load_loses_and_doubles_nothing(tmp_path):
    """The deployment on a broker of its own, stopped for a few seconds under load:
    the collector keeps answering 202 and spools; the worker and the store wait for the
    broker; once it is back, everything acknowledged is stored, once."""
    broker = LocalBroker(tmp_path / "kafka")  # not the suite's broker: this one is stopped under load
    broker.start()
    try:
        d = Deployment(tmp_path, bootstrap=broker.bootstrap, partitions=3)
        try:
            store, worker = d.store().start(), d.worker().start()
            collector = d.collector().start()
            load = Acknowledged(collector.url, site=SITE, headers=HEADERS).start()
            try:
                wait_for(lambda: d.stored()[0]["n"] >= 200, 30, "beacons stored before the fault")
                broker.stop()
                # Kafka is gone: the collector still acknowledges, and keeps the beacons on disk.
                _more_acknowledged(load, 500, "beacons acknowledged while the broker is down")
                wait_for(lambda: _spool_bytes(collector) > 0, 10, "the spool holding what Kafka has not")
                broker.start()
                _more_acknowledged(load, 500, "beacons acknowledged after the broker came back")
            finally:
                load.stop()
            assert not load.refused, [r.text for r in load.refused[:3]]
            _stop_collector(collector)
            exactly_once(d.stored_paths(timeout=60), load.acknowledged)
            # They came through the outage on their own: still the processes started first.
            assert store.proc.poll() is None and worker.proc.poll() is None
        finally:
            d.close()
    finally:
        broker.stop()


def test_the_store_owner_killed_under_load_stores_everything_once_after_its_restart(tmp_path):
    """``beacon serve --kafka`` gets SIGKILL while it inserts (no flush, no offset
    commit): the restarted one reads again from the last commit, and the sink skips
    what was stored (batch ids looked up, insert deduplication tokens)."""
    d = Deployment(tmp_path, partitions=3)
    try:
        store = d.store().start()
        d.worker().start()
        collector = d.collector().start()
        load = Acknowledged(collector.url, site=SITE, headers=HEADERS).start()
        try:
            wait_for(lambda: d.stored()[0]["n"] >= 300, 30, "beacons stored before the kill")
            store.kill()  # SIGKILL
            _more_acknowledged(load, 300, "beacons acknowledged while the store is down")
            d.store().start()
            _more_acknowledged(load, 300, "beacons acknowledged after the store's restart")
        finally:
            load.stop()
        assert not load.refused, [r.text for r in load.refused[:3]]
        _stop_collector(collector)
        exactly_once(d.stored_paths(), load.acknowledged)
    finally:
        d.close()
