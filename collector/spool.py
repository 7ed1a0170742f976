"""An on-disk queue between the collector and Kafka.

Every accepted micro-batch is appended here first; a sender reads records in order,
produces them, and commits its read position only once Kafka acknowledged them. So
a broker outage, a slow broker or a restart of the collector loses nothing: records
wait on disk and are replayed in order. The spool is bounded; when it is full the
collector answers 503.

Layout: numbered segment files ``NNNNNNNNNNNN.seg`` of records
``[u32 key length][u32 value length][key][value]``, and ``position`` (the first
unacknowledged record: segment number and byte offset). A new process always
starts a new segment, so a record cut short by a crash is only ever at the end of
an old segment, where the reader skips it.

The spool's disk may fill before ``max_bytes`` (a small volume, other files on
it): an append that finds no room is undone (the segment is cut back to its last
whole record) and refused like a full spool, and the spool stays full until an
append succeeds again (one is tried every ``DISK_RETRY_SECONDS``), so the collector
answers 503 meanwhile and nothing it acknowledged is lost. The segment being written is closed then, so that it can be
deleted once Kafka acknowledged it: that is what gives the room back when the
spool itself filled the disk. A segment is also closed after ``SEGMENT_SECONDS``:
the records hold raw beacons, which should leave the disk soon after Kafka has them.

The records appended by this process are also kept in memory (up to
``TAIL_BYTES``) until the sender reads them: while Kafka keeps up, nothing is read
back from disk. Records written before a restart, or while Kafka was away long
enough to fill that memory, are read from their segment files.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("beacon.spool")

_HEADER = struct.Struct(">II")
_SEGMENT_BYTES = 64 * 1024 * 1024
PERSIST_INTERVAL = 0.5  # seconds between rewrites of the position file
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
TAIL_BYTES = 32 * 1024 * 1024
# Raw beacons (full IPs) leave the disk with their segment, once Kafka has all of it:
# a segment per second, so they stay about that long while Kafka keeps up.
SEGMENT_SECONDS = 1.0
DISK_RETRY_SECONDS = 1.0


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class SpooledRecord:
    key: bytes
    value: bytes
    end: Position  # the position just after this record


class SpoolFull(Exception):
    pass


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = _SEGMENT_BYTES,
        tail_bytes: int = TAIL_BYTES,
        segment_seconds: float = SEGMENT_SECONDS,
        fsync: bool = False,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.fsync = fsync  # each record flushed to the disk before append returns (--durability fsync)
        self._lock = threading.Lock()
        segments = self._segments()
        committed = self._load_position()
        if segments:
            if committed is None or committed.segment < segments[0]:
                committed = Position(segments[0], 0)
            self._write_segment = segments[-1] + 1
        else:
            self._write_segment = committed.segment + 1 if committed else 1
            committed = Position(self._write_segment, 0)
        self._committed = self._read = self._persisted = committed
        self._persisted_at = float("-inf")
        self._writer = self._open(self._write_segment)
        self._write_offset = 0
        self._opened_at = time.monotonic()
        self._out_of_disk = False  # the last append found the disk full
        self._out_of_disk_at = 0.0
        self._bytes = sum(self._path(s).stat().st_size for s in segments) - committed.offset
        # The newest records, in order, as written: (start, record); see the module doc.
        self._tail: deque[tuple[Position, SpooledRecord]] = deque()
        self._tail_bytes = 0
        self._tail_max = tail_bytes

    # --- writing (collector) ------------------------------------------------------

    def append(self, key: bytes, value: bytes) -> None:
        record = _HEADER.pack(len(key), len(value)) + key + value
        with self._lock:
            if self._bytes + len(record) > self.max_bytes:
                raise SpoolFull()
            try:
                if self._write_offset and (
                    self._write_offset + len(record) > self.segment_bytes
                    or time.monotonic() - self._opened_at >= self.segment_seconds
                ):
                    self._roll()
                self._write(record)  # into the OS: survives a crash of this process
                if self.fsync:
                    os.fdatasync(self._writer.fileno())  # and on the disk: a power loss too
            except OSError as exc:
                if exc.errno not in _NO_ROOM:
                    raise
                self._no_room()
                raise SpoolFull() from exc
            self._out_of_disk = False
            start = Position(self._write_segment, self._write_offset)
            self._write_offset += len(record)
            self._bytes += len(record)
            self._remember(start, SpooledRecord(key, value, Position(self._write_segment, self._write_offset)))

    def _remember(self, start: Position, record: SpooledRecord) -> None:
        if self._tail_bytes + len(record.value) > self._tail_max:
            self._tail.clear()  # Kafka is behind: the reader goes to disk until it catches up
            self._tail_bytes = 0
        self._tail.append((start, record))
        self._tail_bytes += len(record.value)

    def _write(self, record: bytes) -> None:
        """Write the whole record, or nothing: a disk that fills part-way through it
        would otherwise leave half a record before the next one."""
        written = 0
        try:
            while written < len(record):  # a write that runs out of room is short
                written += self._writer.write(memoryview(record)[written:])
        except OSError:
            os.ftruncate(self._writer.fileno(), self._write_offset)
            raise

    def _no_room(self) -> None:
        """The disk is full: the spool is full until an append succeeds again."""
        if not self._out_of_disk:
            log.warning(
                "the spool's disk is full; refusing beacons until there is room", extra={"pending_bytes": self._bytes}
            )
        self._out_of_disk = True
        self._out_of_disk_at = time.monotonic()
        if self._write_offset:
            try:
                self._roll()  # so that this segment can go once Kafka has it all
            except OSError:
                pass  # not even an empty file fits: tried again at the next refusal

    def full(self, margin: int = 0) -> bool:
        """Out of room. A full disk counts for ``DISK_RETRY_SECONDS`` after the last
        refusal: then one append may try again (nothing else would: a 202 waits for
        the append, so beacons are refused, not held, while the disk is full)."""
        refusing = self._out_of_disk and time.monotonic() - self._out_of_disk_at < DISK_RETRY_SECONDS
        return refusing or self._bytes + margin > self.max_bytes

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def _roll(self) -> None:
        writer = self._open(self._write_segment + 1)  # an empty file: even a full disk takes one
        self._writer.close()
        self._writer = writer
        self._write_segment += 1
        self._write_offset = 0
        self._opened_at = time.monotonic()

    def _open(self, segment: int):
        # Unbuffered: one write() per record, and nothing held back in Python that a
        # full disk could leave half-written.
        writer = open(self._path(segment), "ab", buffering=0)
        if self.fsync:  # the new name itself must survive a power loss
            directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return writer

    # --- reading (sender) -----------------------------------------------------------

    def read(self, max_records: int) -> list[SpooledRecord]:
        """The next records after the read cursor (not yet committed)."""
        out: list[SpooledRecord] = []
        while len(out) < max_records:
            with self._lock:
                while self._tail and self._tail[0][0] < self._read:  # read from disk already
                    self._forget_oldest()
                if self._tail and self._tail[0][0] == self._read:
                    out += self._read_tail(max_records - len(out))
                    continue
                # From disk, up to where the memory takes over.
                frontier = self._tail[0][0] if self._tail else Position(self._write_segment, self._write_offset)
            from_disk = self._read_disk(frontier, max_records - len(out))
            if not from_disk:
                break
            out += from_disk
        return out

    def _read_disk(self, frontier: Position, max_records: int) -> list[SpooledRecord]:
        out: list[SpooledRecord] = []
        pos = self._read
        while len(out) < max_records and pos < frontier:
            bound = frontier.offset if pos.segment == frontier.segment else None
            records, after, exhausted = self._scan(pos, bound, max_records - len(out))
            out.extend(records)
            if bound is None and exhausted:
                pos = Position(pos.segment + 1, 0)  # an old segment ends here
            else:
                pos = after
                if not records:
                    break
        self._read = pos
        return out

    def _read_tail(self, max_records: int) -> list[SpooledRecord]:
        out = []
        while self._tail and len(out) < max_records:
            out.append(self._forget_oldest())
        self._read = out[-1].end
        return out

    def _forget_oldest(self) -> SpooledRecord:
        record = self._tail.popleft()[1]
        self._tail_bytes -= len(record.value)
        return record

    def _scan(self, pos: Position, bound: int | None, limit: int) -> tuple[list[SpooledRecord], Position, bool]:
        """Up to ``limit`` whole records of one segment from ``pos`` (to ``bound``, when
        it is the segment being written). ``exhausted``: no whole record follows."""
        records: list[SpooledRecord] = []
        offset = pos.offset
        try:
            fh = open(self._path(pos.segment), "rb")
        except FileNotFoundError:
            return records, pos, True
        with fh:
            fh.seek(offset)
            while len(records) < limit and (bound is None or offset < bound):
                header = fh.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    return records, Position(pos.segment, offset), True
                key_len, value_len = _HEADER.unpack(header)
                body = fh.read(key_len + value_len)
                if len(body) < key_len + value_len:
                    log.warning("skipping a record cut short by a crash", extra={"segment": pos.segment})
                    return records, Position(pos.segment, offset), True
                offset += _HEADER.size + key_len + value_len
                records.append(SpooledRecord(body[:key_len], body[key_len:], Position(pos.segment, offset)))
        return records, Position(pos.segment, offset), False

    def rewind(self) -> None:
        """Read again from the last commit (the records after it were not acknowledged)."""
        self._read = self._committed

    def commit(self, position: Position) -> None:
        """Everything before ``position`` reached Kafka: forget it. The position file
        is rewritten at most every ``PERSIST_INTERVAL`` s (and on close): after a
        crash, what was acknowledged since is sent again, and the sink skips batch
        ids it already stored, so this costs duplicates in the raw topic, not in
        storage."""
        with self._lock:
            self._bytes -= self._distance(self._committed, position)
            self._committed = position
        if time.monotonic() - self._persisted_at >= PERSIST_INTERVAL:
            self._persist()

    def tidy(self) -> None:
        """While idle: once Kafka has every record, close the segment being written
        and delete it with the position's next write, so that no raw beacon Kafka
        has stays on disk until the next one arrives."""
        with self._lock:
            everything_sent = self._committed == Position(self._write_segment, self._write_offset)
        if everything_sent and (self._write_offset or self._persisted != self._committed):
            self._persist()

    def _persist(self) -> None:
        """Delete the acknowledged segments, then record the position. In that order:
        deleting gives room back on a full disk, where the position file may not be
        written (it is tried again at the next interval); a restart that finds the
        position before the first segment left starts at that segment."""
        with self._lock:
            if self._write_offset and self._committed == Position(self._write_segment, self._write_offset):
                try:
                    self._roll()  # Kafka has all of it: it can go now
                except OSError:
                    pass  # a full disk: the next append's refusal rolls it
            self._committed = self._past_closed_segments(self._committed)
            position, old = self._committed, self._persisted
        for segment in range(old.segment, position.segment):
            self._path(segment).unlink(missing_ok=True)
        self._persisted_at = time.monotonic()
        tmp = self.directory / "position.tmp"
        try:
            tmp.write_text(f"{position.segment} {position.offset}\n")
            os.replace(tmp, self.directory / "position")
        except OSError as exc:
            if exc.errno not in _NO_ROOM:
                raise
            log.warning("the spool's position not written: its disk is full", extra={"segment": position.segment})
            return
        self._persisted = position

    def _past_closed_segments(self, position: Position) -> Position:
        """The same point of the spool, moved past segments that are closed and read to
        their end (so that they can be deleted)."""
        while position.segment < self._write_segment and position.offset >= self._size(position.segment):
            position = Position(position.segment + 1, 0)
        return position

    def _size(self, segment: int) -> int:
        path = self._path(segment)
        return path.stat().st_size if path.exists() else 0

    def close(self) -> None:
        with self._lock:
            self._writer.close()
        if self._persisted != self._committed:
            self._persist()

    # --- helpers --------------------------------------------------------------------

    def _distance(self, a: Position, b: Position) -> int:
        if a.segment == b.segment:
            return b.offset - a.offset
        size = 0
        for segment in range(a.segment, b.segment):
            path = self._path(segment)
            size += (path.stat().st_size if path.exists() else 0) - (a.offset if segment == a.segment else 0)
        return size + b.offset

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg"))

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}.seg"

    def _load_position(self) -> Position | None:
        try:
            segment, offset = map(int, (self.directory / "position").read_text().split())
        except (FileNotFoundError, ValueError):
            return None
        return Position(segment, offset)
