"""Faults injected into a running ``beacon serve``: its store's disk fills.

What must hold through a fault: every beacon answered 2xx is stored exactly once,
none answered otherwise is stored, and the process recovers by itself once the
cause is gone. (The spool's disk filling: tests/test_spool.py; the wall clock set
back: tests/test_salts_timer.py.)"""

from __future__ import annotations

import httpx

from tests.faults import Acknowledged, exactly_once, fill, free_bytes, tmpfs, wait_for
from tests.server import BeaconServer, cli

SITE = "example.com"


def _readyz(url: str) -> dict:
    answer = httpx.get(f"{url}/readyz", timeout=5)
    return answer.json() | {"status": answer.status_code}


def test_a_full_disk_is_answered_503_and_named_and_ingestion_resumes_when_room_returns(tmp_path):
    """The data directory on a 64 MiB tmpfs; a file takes all its free room under a
    steady load. Then /collect answers 503 with Retry-After (the beacons stay with
    the client) instead of 202 for beacons that cannot be stored, and /readyz fails
    with ``store_writable`` and says "disk full". Once the file is deleted, the same
    process accepts and stores again."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        data_dir = disk / "data"
        cli("sites", "add", "--data-dir", str(data_dir), SITE)
        server = BeaconServer(data_dir, "--flush-interval", "0.2").start()
        load = Acknowledged(server.url).start()
        try:
            wait_for(lambda: len(load.acknowledged) >= 100, 20, "beacons accepted before the fault")
            filler = fill(disk)
            assert free_bytes(disk) < 1 << 20

            refused = wait_for(lambda: load.refused, 20, "a 503 once the store cannot insert")[0]
            assert refused.headers["retry-after"] == "1" and "error" in refused.json()
            ready = wait_for(
                lambda: (r := _readyz(server.url))["status"] == 503 and "causes" in r and r,
                15,
                "/readyz failing with a cause",
            )
            assert ready["checks"]["store_writable"] is False and ready["checks"]["last_insert"] is False
            assert ready["causes"]["store_writable"].startswith("disk full"), ready
            wait_for(lambda: len(load.refused) >= 20, 10, "the load refused while the disk stays full")

            filler.unlink()  # room again: no restart, no command
            wait_for(lambda: load.accepted_since_refusal >= 100, 30, "beacons accepted again")
            wait_for(lambda: _readyz(server.url)["status"] == 200, 15, "/readyz passing again")
            load.stop()
            assert load.refused and all(r.headers["retry-after"] == "1" for r in load.refused)
            assert server.stop()  # SIGTERM: what was accepted is stored before the exit
        finally:
            load.stop()
            server.kill()
        exactly_once(server.query("SELECT path, count() AS n FROM beacon.events GROUP BY path"), load.acknowledged)
        assert "store not writable" in server.log.read_text()
