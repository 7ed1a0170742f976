"""Reads and other writes do not hold up the inserts: the store's inserts have a client
(and a lock) of their own on the one chDB engine."""

from __future__ import annotations

import json
import threading
import time

import pytest

LONG = "SELECT sleepEachRow(0.5) FROM numbers(4) SETTINGS max_block_size = 1"  # ~2 s


@pytest.fixture
def scratch(store):
    store.command("CREATE TABLE IF NOT EXISTS beacon.scratch_rows (n UInt64) ENGINE = MergeTree ORDER BY n")
    yield store
    store.command("DROP TABLE IF EXISTS beacon.scratch_rows")


@pytest.mark.parametrize("call", ["rows", "command"])
def test_an_insert_goes_through_while_a_long_query_runs(scratch, call):
    store = scratch
    busy = store._reads if call == "rows" else store._commands
    running = threading.Thread(target=getattr(store, call), args=(LONG,))
    started = time.monotonic()
    running.start()
    deadline = time.monotonic() + 5
    while not busy.lock.locked():  # the long query holds its client
        assert time.monotonic() < deadline
        time.sleep(0.001)
    store.insert_json_rows("beacon.scratch_rows", "".join(json.dumps({"n": i}) + "\n" for i in range(1000)).encode())
    inserted_after = time.monotonic() - started
    still_running = running.is_alive()
    running.join()
    assert still_running, f"the insert waited for the query ({inserted_after:.2f} s)"
    assert store.rows("SELECT count() FROM beacon.scratch_rows") == [(1000,)]
