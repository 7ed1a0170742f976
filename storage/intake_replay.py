"""The store owner's side of the intake log (``storage.intake_log``): delete the
segments whose rows are stored, and store the rows of dead writers that are not.

Every ``interval`` seconds, for each writer in the directory:

* alive (its lock is held): each sealed segment (one it has moved past) is deleted
  once every one of its rows is in ``beacon.events`` or ``beacon.dead_letters``;
  rows still on their way stay logged until then;
* dead (the lock is free: the process ended, cleanly or not): what its rows still
  on their way to the store become is settled first (``settle``: the owner's
  buffer stored what had reached it), then its rows not stored are inserted, with
  a deduplication token made of the segment's name (a replay that crashes and
  runs again sends the same token), and its segments are deleted.

Exactly once: a row is inserted by the replay only if the store does not hold its
``event_id`` after every other path that could insert it has ended. At start the
owner runs one pass before it serves, so that the previous run's rows are stored first.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Callable

import orjson

from common import metrics
from storage.clickhouse import DATABASE, Store
from storage.sink import EventSink, stored_event_ids

log = logging.getLogger("beacon.intake")

_ID_PREFIX = b'{"event_id":"'  # every row starts so (storage.sink.encode_rows)
_ID_END = len(_ID_PREFIX) + 36
_LOOKUP_CHUNK = 10_000


class IntakeRetirer:
    def __init__(self, directory: Path, sink: EventSink, settle: Callable[[], None] = lambda: None,
                 interval: float = 1.0):
        self.directory = Path(directory)
        self.sink = sink
        self.settle = settle
        self.interval = interval
        self._stop = threading.Event()
        self._replaying = ""  # the dead writer whose lock this pass holds
        self._thread = threading.Thread(target=self._run, name="intake-retirer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, then settle what the writers left (all ended by now: a last pass)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.run_once()

    def run_once(self) -> int:
        """One pass over the writers; returns the rows replayed."""
        replayed = 0
        for writer, segments in sorted(self._writers().items()):
            lock_fd = self._lock_if_dead(writer)
            if lock_fd is None:
                self._retire_stored(segments[:-1])
                continue
            self._replaying = writer
            try:
                replayed += self._replay(writer, segments)
            finally:
                self._replaying = ""
                if lock_fd >= 0:
                    os.close(lock_fd)
        return replayed

    def live_writers(self) -> int:
        """Writers whose process holds its lock now."""
        alive = 0
        for writer in self._writers():
            if writer == self._replaying:
                continue
            fd = self._lock_if_dead(writer)
            if fd is None:
                alive += 1
            elif fd >= 0:
                os.close(fd)
        return alive

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the store is down, say: the next pass tries again
                log.exception("intake log pass failed; retrying")

    def _writers(self) -> dict[str, list[Path]]:
        writers: dict[str, list[Path]] = defaultdict(list)
        for path in self.directory.glob("[!.]*.log"):
            writers[path.name.split(".", 1)[0]].append(path)
        for path in self.directory.glob("[!.]*.lock"):  # a dot: a lock not yet named (storage.intake_log)
            writers.setdefault(path.name.split(".", 1)[0], [])
        return {writer: sorted(segments) for writer, segments in writers.items()}

    def _lock_if_dead(self, writer: str) -> int | None:
        """The writer's lock, taken when it is free (-1: no lock file: dead too);
        None while the writer holds it."""
        try:
            fd = os.open(self.directory / f"{writer}.lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _retire_stored(self, sealed: list[Path]) -> None:
        for segment in sealed:
            rows = read_rows(segment)
            if not self._missing(rows):
                segment.unlink()

    def _replay(self, writer: str, segments: list[Path]) -> int:
        self.settle()
        replayed = 0
        for segment in segments:
            missing = self._missing(read_rows(segment))
            if missing:
                token = "intake:" + hashlib.sha256(segment.name.encode() + b"".join(missing)).hexdigest()
                self.sink.write_rows(b"\n".join(missing), len(missing), [], token=token)
                replayed += len(missing)
            segment.unlink()
        (self.directory / f"{writer}.lock").unlink(missing_ok=True)
        if replayed:
            metrics.intake_replayed.inc(replayed)
            log.warning("beacons of a process that ended were stored from its intake log",
                        extra={"writer": writer, "rows": replayed})
        return replayed

    def _missing(self, rows: list[bytes]) -> list[bytes]:
        """The rows neither stored nor set aside as dead letters."""
        if not rows:
            return []
        since = min(_ts(rows[0]), _ts(rows[-1]))
        ids = [_event_id(row) for row in rows]
        stored: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            stored |= stored_event_ids(self.sink.store, ids[start:start + _LOOKUP_CHUNK], since)
        missing = [row for row, event_id in zip(rows, ids) if event_id not in stored]
        if missing:
            set_aside = dead_letter_ids(self.sink.store, [_event_id(row) for row in missing])
            missing = [row for row in missing if _event_id(row) not in set_aside]
        return missing


def read_rows(segment: Path) -> list[bytes]:
    """A segment's whole rows: a line cut short by a crash (no newline) was never
    acknowledged, and is left out."""
    data = segment.read_bytes()
    return [line for line in data[:data.rfind(b"\n") + 1].split(b"\n") if line]


def dead_letter_ids(store: Store, event_ids: list[str]) -> set[str]:
    return {event_id for (event_id,) in store.rows(
        f"SELECT event_id FROM {DATABASE}.dead_letters WHERE event_id IN {{ids:Array(String)}}", {"ids": event_ids})}


def _event_id(row: bytes) -> str:
    if row.startswith(_ID_PREFIX):
        return row[len(_ID_PREFIX):_ID_END].decode()
    return str(orjson.loads(row).get("event_id", ""))


def _ts(row: bytes) -> float:
    return float(orjson.loads(row)["ts"])
