"""The intake log: clean rows written to disk before their 202, so a crash loses none.

    <data-dir>/intake/<writer>.lock         held (flock) while the writer lives
    <data-dir>/intake/<writer>.<seq>.log    JSONEachRow rows, appended in groups

Each process that filters beacons (``beacon serve``, or each HTTP worker of
``--workers N``) is a writer. It appends the rows of one filter batch with one
``write`` (``durability="process"``: in the kernel's page cache, which survives the
process, not the machine) or ``write`` + ``fdatasync`` (``"fsync"``: on the disk,
which survives a power loss too); every request of the batch is answered then
(a group commit). The rows are those the store will hold: the privacy filter ran
before, so no raw IP reaches the disk.

A writer starts a new segment every ``segment_seconds`` (or ``segment_bytes``),
before the append that finds the current one due, so that every row of a sealed
segment had been passed on when the next segment appeared. It never deletes one:
the store's owner does (``storage.intake_replay``), once their rows are stored, and
replays a crashed writer's segments. The lock says which writers live: the kernel
releases it when its process ends, however it ends. A writer that stops cleanly,
having passed every row on to a live store owner, leaves ``<writer>.closed`` naming
that owner's pid: that owner replays none of its rows (some may have been erased
since they were stored); any other replays them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path

log = logging.getLogger("beacon.intake")

DIRECTORY = "intake"
DURABILITY = ("process", "fsync")
RETRY_AFTER_FAILURE = 1.0  # seconds


def intake_dir(data_dir: Path) -> Path:
    return Path(data_dir) / DIRECTORY


class IntakeLog:
    """One writer's segments. Not thread-safe: one thread (the event loop's) appends."""

    def __init__(
        self, directory: Path, durability: str = "process", segment_seconds: float = 1.0, segment_bytes: int = 16 << 20
    ):
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY)}")
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fsync = durability == "fsync"
        self.segment_seconds = segment_seconds
        self.segment_bytes = segment_bytes
        self.writer = uuid.uuid4().hex[:16]
        self._failed_at: float | None = None  # the last failed write, until one succeeds
        self._lock_fd = self._take_lock()
        self._seq = 0
        self._fd = -1
        self._size = 0
        self._opened_at = 0.0
        self._open_segment(0)

    def append(self, rows: bytes) -> bool:
        """Write ``rows`` (JSONEachRow, without the last newline) durably; False when the
        disk refused them (they are not durable: the caller answers 503)."""
        record = rows + b"\n"
        if self._size and self._due():
            try:
                self._roll()
            except OSError:
                pass  # this segment goes on until a new one can be made
        try:
            self._write_all(record)
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError as exc:
            self._write_failed(exc)
            return False
        self._failed_at = None
        self._size += len(record)
        return True

    def _due(self) -> bool:
        """Time for a new segment (checked before an append, see the module doc)."""
        return self._size >= self.segment_bytes or time.monotonic() - self._opened_at >= self.segment_seconds

    @property
    def healthy(self) -> bool:
        """False for a second after a failed write (the collector answers 503 without
        trying); then one batch may try again, and so on until a write succeeds."""
        return self._failed_at is None or time.monotonic() - self._failed_at >= RETRY_AFTER_FAILURE

    def close(self, passed_on_to: int | None) -> None:
        """Stop writing; the segments stay for the store's owner to delete.
        ``passed_on_to``: the pid of the owner every row was handed to (its buffer
        stores them), which needs to replay none; None: some may not have reached it."""
        os.close(self._fd)
        if passed_on_to is not None:
            closed_marker(self.directory, self.writer).write_text(str(passed_on_to))
        os.close(self._lock_fd)  # releases the lock: the owner may now settle this writer's segments

    def _write_all(self, record: bytes) -> None:
        view = memoryview(record)
        while view:
            view = view[os.write(self._fd, view) :]

    def _write_failed(self, exc: OSError) -> None:
        """Part of the record may be on disk: cut it off, so that the next record does
        not continue it (or, if even that fails, start a new segment: a replay skips
        a last line that is not whole)."""
        if self._failed_at is None:
            log.error("the intake log cannot be written; beacons are refused (503)", extra={"error": str(exc)})
        self._failed_at = time.monotonic()
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            try:
                self._roll()
            except OSError:
                pass  # not even an empty file: the next failure tries again

    def _roll(self) -> None:
        """The next segment; the current one stays open if it cannot be made."""
        old = self._fd
        self._open_segment(self._seq + 1)
        os.close(old)

    def _open_segment(self, seq: int) -> None:
        path = self.directory / segment_name(self.writer, seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._seq = seq
        self._size = 0
        self._opened_at = time.monotonic()
        if self.fsync:  # the new name itself must survive a power loss
            self._sync_directory()

    def _take_lock(self) -> int:
        """Locked before it has its name, so that no one sees this writer unlocked."""
        temporary = self.directory / f".{self.writer}.lock"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(temporary, self.directory / f"{self.writer}.lock")
        return fd

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def closed_marker(directory: Path, writer: str) -> Path:
    return Path(directory) / f"{writer}.closed"


def segment_name(writer: str, seq: int) -> str:
    return f"{writer}.{seq:010d}.log"
