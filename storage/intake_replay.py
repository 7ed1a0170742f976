"""The store owner's side of the intake log (``storage.intake_log``): delete the
segments whose rows are stored, and store the rows of dead writers that are not.

Every ``interval`` seconds, for each writer in the directory:

* this process's own writer (``beacon serve``): its sealed segments (those it has
  moved past) are deleted once the buffer has finished two drain rounds since
  (``drained_rounds``), which stored what it had;
* another live writer (an HTTP worker: its lock is held): each sealed segment is
  deleted once every one of its rows is in ``beacon.events`` or
  ``beacon.dead_letters`` (looked up by event id); rows on their way stay logged;
* a writer that ended: first ``settle`` (the owner took its last frames and
  stored them); then, if it ended cleanly (``<writer>.closed`` names this process:
  it had handed every row to it), its segments are deleted; if it crashed, its rows the store does not
  hold are inserted, with a deduplication token made of the segment's name (a
  replay that crashes and runs again sends the same token), then deleted.

Exactly once: a row is inserted by the replay only if the store does not hold its
``event_id`` after every other path that could insert it has ended. At start the
owner runs one pass before it serves, so that the previous run's rows are stored
first. Left open: a subject erased while a row of theirs was in a crashed
writer's log gets that row back; a clean stop replays nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson

from common import metrics
from storage.clickhouse import DATABASE, Store
from storage.intake_log import closed_marker
from storage.sink import EventSink, stored_event_ids

log = logging.getLogger("beacon.intake")

_ID_PREFIX = b'{"event_id":"'  # every row starts so (storage.sink.encode_rows)
_ID_END = len(_ID_PREFIX) + 36
_LOOKUP_CHUNK = 10_000


class IntakeRetirer:
    def __init__(
        self,
        directory: Path,
        sink: EventSink,
        settle: Callable[[], bool],
        local_writer: str = "",
        drained_rounds: Callable[[], int] | None = None,
        interval: float = 1.0,
    ):
        if local_writer and drained_rounds is None:
            raise ValueError("a local writer's segments need the buffer's drained_rounds")
        self.directory = Path(directory)
        self.sink = sink
        self.settle = settle  # True once what reached this process is stored
        self.local_writer = local_writer  # this process's own writer, if it has one
        self.drained_rounds = drained_rounds  # its buffer's finished drain rounds (RowBuffer.rounds)
        self._sealed_at: dict[str, int] = {}  # the local writer's sealed segments: drained_rounds when first seen
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
                if writer == self.local_writer:
                    self._retire_passed_on(segments[:-1])
                else:
                    self._retire_stored(segments[:-1])
                continue
            self._replaying = writer
            try:
                replayed += self._settle_ended(writer, segments)
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
        for pattern in ("[!.]*.lock", "[!.]*.closed"):  # a dot: a lock not yet named (storage.intake_log)
            for path in self.directory.glob(pattern):
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

    def _retire_passed_on(self, sealed: list[Path]) -> None:
        """This process's sealed segments: every row went to its buffer before the next
        segment was made, so they are stored once the buffer has finished two drain
        rounds since (the round under way may have begun before the last row came).
        Waited for, not forced: a forced drain each pass (``settle``) added inserts,
        which delay the answers (the p99: docs/benchmarks.md, the intake log's section)."""
        rounds = self.drained_rounds()
        for segment in sealed:
            seen = self._sealed_at.setdefault(segment.name, rounds)
            if rounds >= seen + 2:
                segment.unlink()
                del self._sealed_at[segment.name]

    def _retire_stored(self, sealed: list[Path]) -> None:
        for segment in sealed:
            rows = read_rows(segment)
            if not self._missing(rows):
                segment.unlink()

    def _settle_ended(self, writer: str, segments: list[Path]) -> int:
        """A writer that ended: its rows stored once, its files deleted; returns the
        rows replayed. Nothing is done before what reached this process is stored."""
        if not self.settle():
            return 0
        clean = closed_marker(self.directory, writer)
        replayed = 0 if _passed_on_to_me(clean) else self._replay(writer, segments)
        for segment in segments:
            segment.unlink(missing_ok=True)
        clean.unlink(missing_ok=True)
        (self.directory / f"{writer}.lock").unlink(missing_ok=True)
        return replayed

    def _replay(self, writer: str, segments: list[Path]) -> int:
        replayed = 0
        for segment in segments:
            missing = self._missing(read_rows(segment))
            if missing:
                token = "intake:" + hashlib.sha256(segment.name.encode() + b"".join(missing)).hexdigest()
                self.sink.write_rows(b"\n".join(missing), len(missing), [], token=token)
                replayed += len(missing)
        if replayed:
            metrics.intake_replayed.inc(replayed)
            log.warning(
                "beacons of a process that ended were stored from its intake log",
                extra={"writer": writer, "rows": replayed},
            )
        return replayed

    def _missing(self, rows: list[bytes]) -> list[bytes]:
        """The rows neither stored nor set aside as dead letters."""
        if not rows:
            return []
        since = min(_ts(rows[0]), _ts(rows[-1]))
        ids = [_event_id(row) for row in rows]
        stored: set[str] = set()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            stored |= stored_event_ids(self.sink.store, ids[start : start + _LOOKUP_CHUNK], since)
        missing = [row for row, event_id in zip(rows, ids) if event_id not in stored]
        if missing:
            set_aside = dead_letter_ids(self.sink.store, [_event_id(row) for row in missing])
            missing = [row for row in missing if _event_id(row) not in set_aside]
        return missing


def _passed_on_to_me(marker: Path) -> bool:
    """The writer stopped cleanly, every row handed to this process (which stored them)."""
    try:
        return marker.read_text() == str(os.getpid())
    except FileNotFoundError:
        return False


def read_rows(segment: Path) -> list[bytes]:
    """A segment's whole rows: a line cut short by a crash (no newline) was never
    acknowledged, and is left out."""
    data = segment.read_bytes()
    return [line for line in data[: data.rfind(b"\n") + 1].split(b"\n") if line]


def dead_letter_ids(store: Store, event_ids: list[str]) -> set[str]:
    return {
        event_id
        for (event_id,) in store.rows(
            f"SELECT event_id FROM {DATABASE}.dead_letters WHERE event_id IN {{ids:Array(String)}}", {"ids": event_ids}
        )
    }


def _event_id(row: bytes) -> str:
    if row.startswith(_ID_PREFIX):
        return row[len(_ID_PREFIX) : _ID_END].decode()
    return str(orjson.loads(row).get("event_id", ""))


def _ts(row: bytes) -> float:
    return float(orjson.loads(row)["ts"])
