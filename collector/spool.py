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

The records appended by this process are also kept in memory (up to
``TAIL_BYTES``) until the sender reads them: while Kafka keeps up, nothing is read
back from disk. Records written before a restart, or while Kafka was away long
enough to fill that memory, are read from their segment files.
"""
from __future__ import annotations

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
TAIL_BYTES = 32 * 1024 * 1024


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
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = _SEGMENT_BYTES,
                 tail_bytes: int = TAIL_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
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
        self._writer = open(self._path(self._write_segment), "ab")
        self._write_offset = 0
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
            if self._write_offset and self._write_offset + len(record) > self.segment_bytes:
                self._roll()
            self._writer.write(record)
            self._writer.flush()  # into the OS: survives a crash of this process
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

    def full(self, margin: int = 0) -> bool:
        return self._bytes + margin > self.max_bytes

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def _roll(self) -> None:
        self._writer.close()
        self._write_segment += 1
        self._writer = open(self._path(self._write_segment), "ab")
        self._write_offset = 0

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

    def _persist(self) -> None:
        position, old = self._committed, self._persisted
        tmp = self.directory / "position.tmp"
        tmp.write_text(f"{position.segment} {position.offset}\n")
        os.replace(tmp, self.directory / "position")
        for segment in range(old.segment, position.segment):
            self._path(segment).unlink(missing_ok=True)
        self._persisted, self._persisted_at = position, time.monotonic()

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
