"""The collector's on-disk spool: order, bounds, restarts, crashes."""

from __future__ import annotations

import pytest

from collector import spool as spool_module
from collector.spool import Spool, SpoolFull


def _drain(spool: Spool, n: int = 10_000) -> list[bytes]:
    records = spool.read(n)
    if records:
        spool.commit(records[-1].end)
    return [r.value for r in records]


def test_records_come_back_in_order_across_segments(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=100)
    values = [f"batch-{i}".encode() * 3 for i in range(50)]
    for i, v in enumerate(values):
        spool.append(f"k{i}".encode(), v)
    got = spool.read(7) + spool.read(1000)
    assert [r.value for r in got] == values
    assert [r.key for r in got][:2] == [b"k0", b"k1"]
    spool.commit(got[-1].end)
    assert spool.pending_bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the segment being written remains


def test_uncommitted_records_are_read_again_after_rewind_and_restart(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    for i in range(10):
        spool.append(b"k", f"v{i}".encode())
    first = spool.read(4)
    spool.commit(first[-1].end)
    assert [r.value for r in spool.read(3)] == [b"v4", b"v5", b"v6"]
    spool.rewind()  # Kafka did not acknowledge v4..v6
    assert [r.value for r in spool.read(2)] == [b"v4", b"v5"]
    spool.close()

    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    reopened.append(b"k", b"v10")
    assert _drain(reopened) == [f"v{i}".encode() for i in range(4, 11)]
    reopened.close()
    assert _drain(Spool(tmp_path, max_bytes=1 << 20)) == []


def test_full_spool_refuses_until_records_are_acknowledged(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(b"k", b"x" * 40)
    spool.append(b"k", b"x" * 40)
    with pytest.raises(SpoolFull):
        spool.append(b"k", b"x" * 40)
    assert spool.full(margin=40)
    assert len(_drain(spool)) == 2
    spool.append(b"k", b"x" * 40)  # room again


def test_a_record_cut_short_by_a_crash_is_skipped(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"k", b"whole")
    spool.append(b"k", b"torn-record")
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[:-4])  # the process died mid-write
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    reopened.append(b"k", b"after-restart")
    assert _drain(reopened) == [b"whole", b"after-restart"]


def test_after_a_crash_acknowledged_records_may_come_again_but_none_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "PERSIST_INTERVAL", 3600.0)  # no second write during the test
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for i in range(10):
        spool.append(b"k", f"v{i}".encode())
    spool.commit(spool.read(4)[-1].end)  # the first commit is written at once
    spool.commit(spool.read(3)[-1].end)  # this one only in memory until the interval passes
    assert spool.pending_bytes == sum(len(b"k") + len(f"v{i}") + 8 for i in range(7, 10))
    # The process dies without close(): the next one resends v4..v6 (the sink skips
    # their batch ids) and everything after them.
    assert _drain(Spool(tmp_path, max_bytes=1 << 20)) == [f"v{i}".encode() for i in range(4, 10)]


def test_records_of_this_process_are_read_from_memory(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"k", b"one")
    spool.append(b"k", b"two")
    for segment in tmp_path.glob("*.seg"):
        segment.write_bytes(b"")  # were they read back from disk, they would be gone
    assert [r.value for r in spool.read(10)] == [b"one", b"two"]


def test_memory_and_disk_take_turns_without_losing_order(tmp_path):
    # 3 records fit in memory: the reader falls behind, reads the older ones from
    # disk, then the newest from memory; a rewind reads again from disk.
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=40, tail_bytes=3 * 4)
    values = [b"v%03d" % i for i in range(20)]
    for v in values[:10]:
        spool.append(b"k", v)
    first = spool.read(4)
    assert [r.value for r in first] == values[:4]
    spool.commit(first[-1].end)
    for v in values[10:]:
        spool.append(b"k", v)
    assert [r.value for r in spool.read(100)] == values[4:]
    spool.rewind()
    assert [r.value for r in spool.read(100)] == values[4:]


def test_a_full_disk_refuses_appends_whole_and_room_given_back_lets_them_in(tmp_path):
    """The spool's disk fills before ``max_bytes`` (another file took the room): an
    append is refused like a full spool (the collector answers 503) and leaves no half
    record behind; once Kafka has acknowledged what is spooled the closed segment is
    deleted, and once there is room again appends go on, every record intact and in
    order, also after a restart."""
    from tests.faults import fill, tmpfs

    with tmpfs(tmp_path / "disk", "4m") as disk:
        spool = Spool(disk / "spool", max_bytes=1 << 30, segment_bytes=1 << 20)
        taken = []
        for i in range(20):
            spool.append(b"k", f"before-{i}-".encode() * 100)
            taken.append(f"before-{i}-".encode() * 100)
        filler = fill(disk)
        with pytest.raises(SpoolFull):
            for i in range(1000):  # what the OS still held in its page may take a few
                spool.append(b"k", f"during-{i}-".encode() * 100)
                taken.append(f"during-{i}-".encode() * 100)
        assert spool.full()
        assert _drain(spool) == taken  # nothing cut in half, nothing lost
        filler.unlink()
        spool.append(b"k", b"after")
        assert not spool.full()
        spool.close()
        assert _drain(Spool(disk / "spool", max_bytes=1 << 30, segment_bytes=1 << 20)) == [b"after"]
