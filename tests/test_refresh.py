"""Background refreshes skip their query while the store has seen no write."""

from __future__ import annotations

from storage.refresh import Refreshed


class Counting(Refreshed):
    def __init__(self, writes):
        super().__init__(refresh_seconds=3600, store_writes=writes)
        self.reads = 0
        self.confirmations = 0

    def load(self) -> None:
        self.reads += 1

    def unchanged(self) -> None:
        self.confirmations += 1


def test_a_refresh_is_skipped_until_the_store_is_written():
    writes = [5]
    table = Counting(lambda: writes[0])
    table._tick()
    table._tick()
    table._tick()
    assert (table.reads, table.confirmations) == (1, 2)
    writes[0] += 1  # e.g. `beacon sites add` through the control socket
    table._tick()
    table._tick()
    assert (table.reads, table.confirmations) == (2, 3)


def test_without_a_write_count_every_refresh_reads():
    table = Counting(lambda: None)  # a ClickHouse server: others may write
    for _ in range(3):
        table._tick()
    assert (table.reads, table.confirmations) == (3, 0)


def test_the_value_is_read_again_after_a_while_all_the_same(monkeypatch):
    table = Counting(lambda: 1)
    table._tick()
    monkeypatch.setattr(Counting, "FULL_REFRESH_EVERY", 0.0)
    table._tick()
    assert table.reads == 2


def test_a_failed_write_count_is_not_a_confirmation():
    def unreachable():
        raise ConnectionError("the owner is gone")

    table = Counting(unreachable)
    try:
        table._tick()
    except ConnectionError:
        pass
    assert (table.reads, table.confirmations) == (0, 0)  # tokens go stale, as they should


def test_the_embedded_store_counts_its_commands(store, tmp_path):
    from storage.control import ControlServer

    before = store.writes()
    store.rows("SELECT 1")
    assert store.writes() == before
    store.command("CREATE DATABASE IF NOT EXISTS scratch")
    assert store.writes() == before + 1
    store.raw_query("CREATE TABLE IF NOT EXISTS scratch.t (x UInt8) ENGINE = Memory", "TSV")  # `beacon query` can write
    assert store.writes() == before + 2
    # What a worker process asks the owner, over the control socket:
    assert ControlServer(store, tmp_path / "c.sock")._call({"op": "writes"}) == before + 2


def test_loads_never_overlap():
    """A periodic read that started before a write must not finish after the read
    that follows the write (``refresh()`` from the control socket) and undo it."""
    import threading
    import time

    class Slow(Refreshed):
        def __init__(self):
            super().__init__(refresh_seconds=3600)
            self.active = self.most = 0

        def load(self) -> None:
            self.active += 1
            self.most = max(self.most, self.active)
            time.sleep(0.05)
            self.active -= 1

    table = Slow()
    threads = [threading.Thread(target=table.refresh) for _ in range(4)] + [threading.Thread(target=table._tick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert table.most == 1
