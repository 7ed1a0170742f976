"""Upgrades of an embedded store that leave it as it was when a migration fails.

ClickHouse DDL is not transactional: a migration of several statements can stop
half-way. So, before the first pending migration runs, the store is frozen into a
snapshot on its own disk (``storage.backup`` with hard links: no extra space, a
second or so); when a statement fails, the database is dropped and rebuilt from the
snapshot, and the error names the migration and the cause. A ClickHouse server is
migrated as before: back it up first (docs/production.md).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from storage import backup
from storage.backup_restore import rebuild
from storage.clickhouse import DATABASE, ClickHouseStore, is_embedded
from storage.migrations import Migration, migrate, pending

log = logging.getLogger("beacon.migrations")

SNAPSHOT_DIR = "upgrade-snapshot"


class MigrationFailed(RuntimeError):
    """A migration failed; the store is as it was before the upgrade began."""


def migrate_safely(store: ClickHouseStore) -> list[Migration]:
    """``migrate``, undone as a whole when one of its statements fails."""
    waiting = pending(store)
    if not waiting or not is_embedded(store.dsn) or not _has_tables(store):
        return migrate(store)
    data_dir = Path(urlsplit(store.dsn).path).parent  # the engine's directory is DATA_DIR/clickhouse
    snapshots = data_dir / SNAPSHOT_DIR
    shutil.rmtree(snapshots, ignore_errors=True)  # left by a crash during an earlier upgrade
    source = backup.Source(store, data_dir, pause_inserts=store.paused_inserts)
    snapshot = backup.create(source, snapshots, snapshot=True)
    try:
        return migrate(store)
    except Exception as exc:
        failed = next((m for m in waiting if m.version not in _applied(store)), waiting[0])
        _roll_back(store, snapshot, snapshots / snapshot.backup_id)
        raise MigrationFailed(
            f"migration {failed.version:04d} {failed.name} failed: {_first_line(exc)}; "
            "the store is as it was before the upgrade"
        ) from exc
    finally:
        shutil.rmtree(snapshots, ignore_errors=True)


def _roll_back(store: ClickHouseStore, snapshot: backup.Manifest, folder: Path) -> None:
    log.warning("migration failed: restoring the store from its snapshot")
    store.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    rebuild(store, snapshot, folder, link=True)


def _has_tables(store: ClickHouseStore) -> bool:
    return bool(store.rows("SELECT 1 FROM system.tables WHERE database = {d:String} LIMIT 1", {"d": DATABASE}))


def _applied(store: ClickHouseStore) -> set[int]:
    return {v for (v,) in store.rows(f"SELECT version FROM {DATABASE}.schema_migrations")}


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
