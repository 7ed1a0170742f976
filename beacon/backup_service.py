"""Backups in the process that owns the store (``beacon serve``).

- ``backup_create``, an operation of the control socket: ``beacon backup create``
  while the server runs has the server make it, since only the owner can flush its
  pipeline (every beacon accepted before the cut is stored) and pause its inserts
  (every table frozen at the same point).
- With ``--backup-dir``: the privacy journal follows the store's erasures and
  objections (every second, and after each CLI command), and a backup is made every
  ``--backup-every``, then pruned to ``--backup-keep`` and ``retention_days``;
  ``beacon_backup_*`` metrics tell how old and large the newest is.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from common import metrics
from common.settings import Settings
from storage import backup
from storage.clickhouse import ClickHouseStore, is_embedded
from storage.privacy_journal import PrivacyJournal
from storage.refresh import Refreshed

log = logging.getLogger("beacon.backup")
T = TypeVar("T")


class JournalFollower(Refreshed):
    """Copies the store's erasures and objections to the journal beside the backups."""

    name = "privacy-journal"

    def __init__(self, store: ClickHouseStore, journal: PrivacyJournal, refresh_seconds: float = 1.0):
        super().__init__(refresh_seconds, store.writes)
        self.store = store
        self.journal = journal

    def load(self) -> None:
        try:
            self.journal.sync(self.store)
        except OSError:  # e.g. the backup disk is away: the store still has them, retried next time
            log.exception("privacy journal not written", extra={"journal": str(self.journal.path)})


class BackupService:
    def __init__(self, store: ClickHouseStore, settings: Settings, flush: Callable[[], None]):
        self.store = store
        self.settings = settings
        self.flush = flush
        # A ClickHouse server (--clickhouse) keeps its files on its own machine: back it up there.
        scheduled = settings.backup_dir is not None and is_embedded(store.dsn)
        self.interval = settings.backup_interval_seconds if scheduled else 0.0
        self.follower = JournalFollower(store, PrivacyJournal(settings.backup_dir)) if scheduled else None
        self._one_at_a_time = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backup-schedule", daemon=True)

    def operations(self) -> dict[str, Callable[[dict], Any]]:
        """The control socket's ``backup_create`` (``beacon backup create``)."""
        return {"backup_create": lambda args: summary(self.create(Path(args["backup_dir"])))}

    def create(self, backup_dir: Path) -> backup.Manifest:
        source = backup.Source(
            self.store,
            self.settings.data_dir,
            self.flush,
            self.store.paused_inserts,
            cancelled=self._stop.is_set,
            copying=in_low_priority_thread,
        )
        with self._one_at_a_time:
            manifest = backup.create(source, backup_dir)
        PrivacyJournal(backup_dir).sync(self.store)
        return manifest

    def journal_now(self) -> None:
        """After a CLI command (e.g. an erasure): the journal has it before the CLI returns."""
        if self.follower:
            self.follower.refresh()

    def start(self) -> None:
        if self.follower:
            self.follower.start()
        if self.interval > 0:
            newest = backup.latest(self.settings.backup_dir)
            metrics.backup_last_success.set(newest.created_at if newest else time.time())
            metrics.backup_interval.set(self.interval)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a backup under way is abandoned at its next part
        if self.follower:
            self.follower.stop()

    def _run(self) -> None:
        newest = backup.latest(self.settings.backup_dir)
        due = (newest.created_at + self.interval) if newest else time.time()
        while not self._stop.wait(max(0.0, due - time.time())):
            self._scheduled_backup()
            due = time.time() + self.interval

    def _scheduled_backup(self) -> None:
        directory = self.settings.backup_dir
        try:
            manifest = self.create(directory)
            pruned = prune(directory, self.settings.backup_keep, self.settings.retention_days)
        except backup.BackupCancelled:
            return
        except Exception:
            metrics.backup_failures.inc()
            metrics.backup_failing.set(1)
            log.exception("scheduled backup failed")
            return
        metrics.backup_failing.set(0)
        metrics.backup_last_success.set(manifest.created_at)
        metrics.backup_last_size.set(manifest.total_bytes())
        metrics.backup_last_added.set(manifest.bytes_copied)
        log.info(
            "backup made",
            extra={"backup": manifest.backup_id, "added_bytes": manifest.bytes_copied, "pruned": len(pruned)},
        )


def in_low_priority_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread of the lowest OS priority (nice 19, Linux: per thread)
    and return its result: a backup's copy and hashes yield the cores to the HTTP
    loop and the inserts, so that ingestion keeps its pace during a backup."""
    outcome: list = []

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:
            log.warning("cannot lower the backup thread's priority")
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="backup-copy", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def prune(directory: Path, keep: int, retention_days: int) -> list[str]:
    """``storage.backup.prune``, then the journal entries no kept backup needs."""
    pruned = backup.prune(directory, keep, retention_days)
    kept = backup.backup_ids(directory)
    oldest_cut = backup.read_manifest(directory, kept[0]).created_at if kept else time.time()
    PrivacyJournal(directory).trim(oldest_cut)
    return pruned


def summary(manifest: backup.Manifest) -> dict[str, Any]:
    """What ``beacon backup create`` prints of a backup."""
    return {
        "backup_id": manifest.backup_id,
        "created_at": manifest.created_at,
        "total_bytes": manifest.total_bytes(),
        "added_bytes": manifest.bytes_copied,
        "rows": manifest.rows,
    }
