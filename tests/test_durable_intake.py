"""A 202 means the beacon survives a crash: SIGKILL under load of ``beacon serve``, of
an HTTP worker and of the store's owner under ``--workers 2``; after the restart
every acknowledged beacon is stored exactly once (issue 27)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from storage.intake_log import RETRY_AFTER_FAILURE
from tests.crash_load import CrashLoad, assert_stored_exactly_once
from tests.faults import CHROME, fill, tmpfs, wait_for
from tests.server import BeaconServer, cli

SITE = "example.com"
STORED_PATHS = "SELECT path, count() AS n FROM beacon.events GROUP BY path"


def _data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data_dir), SITE)
    return data_dir


def _logged(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data_dir / "intake").glob("*.log")))


def _http_processes(owner: int) -> list[int]:
    children = [int(pid) for pid in Path(f"/proc/{owner}/task/{owner}/children").read_text().split()]
    return [
        pid
        for pid in children
        if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _serving(server: BeaconServer, worker: int) -> bool:
    """The worker said it serves (beacon.serve_workers), in the server's JSON log."""
    lines = server.log.read_text().splitlines()
    return any(json.loads(line).get("worker_pid") == worker for line in lines if line.startswith("{"))


def _gone(pids: list[int]) -> bool:
    return not any(
        Path(f"/proc/{pid}").exists() and b"\tZ" not in Path(f"/proc/{pid}/status").read_bytes() for pid in pids
    )


def _final_check(data_dir: Path, load: CrashLoad, *serve_args: str) -> BeaconServer:
    """Restart, stop gracefully (every replay done), then read the store."""
    server = BeaconServer(data_dir, *serve_args).start()  # ready once the replay is done
    assert server.stop(), server.log.read_text()[-2000:]
    assert_stored_exactly_once(server.query(STORED_PATHS), load)
    assert not list((data_dir / "intake").glob("*.log")), "the intake log outlived its rows"
    return server


def _acknowledged_stored(server: BeaconServer, load: CrashLoad) -> bool:
    stored = {row["path"] for row in server.query(STORED_PATHS)}
    return set(load.acknowledged) <= stored


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_sigkill_of_beacon_serve_under_load_loses_no_acknowledged_beacon(tmp_path, durability):
    data_dir = _data_dir(tmp_path)
    server = BeaconServer(data_dir, "--durability", durability).start()
    load = CrashLoad(server.url).start()
    wait_for(lambda: len(load.acknowledged) >= 5_000, 60, "5,000 beacons acknowledged")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    load.stop()
    logged = _logged(data_dir)
    restarted = _final_check(data_dir, load, "--durability", durability)
    assert logged.count(b"\n") > 0, "nothing was on its way to the store at the kill: the test shows nothing"
    assert b"127.0.0.1" not in logged, "a raw IP reached the intake log"
    assert "stored from its intake log" in restarted.log.read_text()


def test_sigkill_of_an_http_worker_under_load_loses_no_acknowledged_beacon(tmp_path):
    data_dir = _data_dir(tmp_path)
    server = BeaconServer(data_dir, "--workers", "2").start()
    workers = wait_for(lambda: len(w := _http_processes(server.process.pid)) == 2 and w, 30, "two HTTP processes")
    load = CrashLoad(server.url).start()
    # A worker that dies before it serves is taken for one that cannot start (a port
    # in use…), and the server stops: kill it once it serves, as a crash in service would.
    wait_for(
        lambda: len(load.acknowledged) >= 3_000 and _serving(server, workers[0]),
        60,
        "3,000 beacons acknowledged, and the worker to kill serving",
    )
    os.kill(workers[0], signal.SIGKILL)
    after_kill = len(load.acknowledged)
    # The other worker goes on, and the owner starts a third one in the dead one's place.
    wait_for(lambda: len(load.acknowledged) >= after_kill + 3_000, 60, "3,000 more beacons acknowledged")
    wait_for(
        lambda: len(now := _http_processes(server.process.pid)) == 2 and workers[0] not in now,
        30,
        "the dead worker replaced",
    )
    load.stop()
    wait_for(lambda: _acknowledged_stored(server, load), 60, "acknowledged beacons stored while serving")
    assert server.stop(), server.log.read_text()[-2000:]
    assert_stored_exactly_once(server.query(STORED_PATHS), load)
    assert not list((data_dir / "intake").glob("*.log")), "the intake log outlived its rows"


def test_sigkill_of_the_owner_under_load_loses_no_acknowledged_beacon(tmp_path):
    data_dir = _data_dir(tmp_path)
    server = BeaconServer(data_dir, "--workers", "2").start()
    workers = wait_for(lambda: len(w := _http_processes(server.process.pid)) == 2 and w, 30, "two HTTP processes")
    load = CrashLoad(server.url).start()
    wait_for(lambda: len(load.acknowledged) >= 5_000, 60, "5,000 beacons acknowledged")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    wait_for(lambda: _gone(workers), 30, "the HTTP processes stopped with their owner")
    load.stop()
    logged = _logged(data_dir)
    restarted = _final_check(data_dir, load, "--workers", "2")
    assert logged.count(b"\n") > 0, "nothing was on its way to the store at the kill: the test shows nothing"
    assert "stored from its intake log" in restarted.log.read_text()


def test_an_intake_log_that_cannot_be_written_turns_beacons_away_with_503(tmp_path):
    """No 202 without the write: a full disk under the intake log gets 503 (the client
    keeps the beacon), nothing refused is stored, and 202 comes back with room."""
    data_dir = _data_dir(tmp_path)
    with tmpfs(data_dir / "intake", "1m") as intake:
        server = BeaconServer(data_dir).start()
        try:

            def post(path: str) -> int:
                body = f'{{"site": "{SITE}", "url": "https://{SITE}{path}"}}'
                headers = {"User-Agent": CHROME, "Content-Type": "text/plain"}
                return httpx.post(f"{server.url}/collect", content=body, headers=headers, timeout=10).status_code

            assert post("/before") == 202
            filler = fill(intake)
            # The segment's last page may still take a few rows; then every beacon is refused
            # until the log tries again (RETRY_AFTER_FAILURE later), which may then succeed
            # in room the retirer freed: a crowded machine can take that long for 40 posts.
            answers: dict[str, int] = {}
            sent_at: dict[str, float] = {}
            answered_at: dict[str, float] = {}
            for path in (f"/full/{n}" for n in range(40)):
                sent_at[path] = time.monotonic()
                answers[path] = post(path)
                answered_at[path] = time.monotonic()
            statuses = list(answers.values())
            assert set(statuses) <= {202, 503} and 503 in statuses, statuses
            first_refused = list(answers)[statuses.index(503)]
            assert statuses.index(503) < 10, statuses
            # Answered within the retry delay of the failed write (made after first_refused was sent):
            while_refusing = [
                p
                for p in answers
                if sent_at[first_refused] <= sent_at[p]
                and answered_at[p] - sent_at[first_refused] < RETRY_AFTER_FAILURE
            ]
            assert {answers[p] for p in while_refusing} == {503}, statuses
            filler.unlink()
            wait_for(lambda: post("/after") == 202, 10, "202 again once the disk has room")
            assert server.stop(), server.log.read_text()[-2000:]
        finally:
            server.kill()
    stored = {row["path"] for row in server.query(STORED_PATHS)}
    acknowledged = {"/before", "/after"} | {path for path, status in answers.items() if status == 202}
    assert acknowledged <= stored
    assert not stored & {path for path, status in answers.items() if status == 503}, "a beacon answered 503 was stored"


def test_a_segment_goes_once_its_rows_are_stored_while_serving(tmp_path):
    """The log holds only what is on its way: ``beacon serve``'s own sealed segments are
    deleted, without a stop, once its buffer has stored their rows (two drain rounds
    after the retirer saw them sealed; it waits for them, it does not force them)."""
    data_dir = _data_dir(tmp_path)
    with BeaconServer(data_dir) as server:

        def post(path: str) -> None:
            body = f'{{"site": "{SITE}", "url": "https://{SITE}{path}"}}'
            headers = {"User-Agent": CHROME, "Content-Type": "text/plain"}
            assert httpx.post(f"{server.url}/collect", content=body, headers=headers, timeout=10).status_code == 202

        post("/first")
        first = wait_for(lambda: sorted((data_dir / "intake").glob("*.log")), 10, "a segment")[0]
        assert b"/first" in first.read_bytes()
        sent = iter(range(1_000))  # a new segment is made by the first append a second after the last one

        def sealed() -> bool:
            post(f"/next/{next(sent)}")
            return len(list((data_dir / "intake").glob("*.log"))) > 1

        wait_for(sealed, 10, "the first segment sealed")
        wait_for(lambda: not first.exists(), 10, "the sealed segment deleted while serving")
        stored = {row["path"] for row in server.query(STORED_PATHS)}
        assert "/first" in stored, "a segment went before its rows were stored"
