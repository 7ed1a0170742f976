"""Rebuild a data directory from a backup (``storage.backup``): check every file,
make the backup's tables, attach its parts, re-apply the privacy journal's requests
made since the backup, then migrate forward (a backup may come from an older release).

The store is rebuilt in a directory that holds none: a restore never mixes with a
store in use. When a step fails, what it made is removed and the error says which step.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from storage.backup import BackupError, Manifest, plain_name, read_manifest, verify
from storage.clickhouse import DATABASE, ClickHouseStore, Store, dsn_for_data_dir
from storage.migrations import migrate
from storage.privacy_journal import PrivacyJournal, reapply


@dataclass(frozen=True)
class Restored:
    backup_id: str
    rows: dict[str, int]
    journal_entries: int  # requests of the journal re-applied
    erased_rows: int  # rows those erasures removed
    migrations: list[str]


def restore(backup_dir: Path, backup_id: str, data_dir: Path) -> Restored:
    problems = verify(backup_dir, backup_id)
    if problems:
        raise BackupError(f"backup {backup_id} fails its checksums ({len(problems)} problem(s)): {problems[0]}")
    manifest = read_manifest(backup_dir, backup_id)
    target = Path(data_dir) / "clickhouse"
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{data_dir} already holds a store: restore into a new directory")
    store = ClickHouseStore(dsn_for_data_dir(data_dir))
    try:
        rebuild(store, manifest, backup_dir / backup_id)
        entries = PrivacyJournal(backup_dir).since(manifest.created_at)
        erased = reapply(store, entries)
        applied = migrate(store)
        rows = {t: store.rows(f"SELECT count() FROM {DATABASE}.{t}")[0][0] for t in manifest.tables}
    except BaseException:
        store.close()
        shutil.rmtree(target, ignore_errors=True)
        raise
    store.close()
    return Restored(backup_id, rows, len(entries), erased, [f"{m.version:04d} {m.name}" for m in applied])


def rebuild(store: Store, manifest: Manifest, folder: Path, link: bool = False) -> None:
    """Make the backup's tables in ``store`` (which has none of them) and attach its
    parts: copies, or hard links (``link``: from a snapshot that is thrown away next)."""
    store.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    for name, table in manifest.tables.items():
        store.command(table.create)
        detached = _data_path(store, plain_name(name)) / "detached"
        for part in map(plain_name, table.parts):
            shutil.copytree(
                folder / "tables" / name / part, detached / part, copy_function=os.link if link else shutil.copy2
            )
            store.command(f"ALTER TABLE {DATABASE}.{name} ATTACH PART '{part}'")
    for view in manifest.views:  # after the tables they read and feed
        store.command(view)


def _data_path(store: Store, table: str) -> Path:
    found = store.rows(
        "SELECT data_paths[1] FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        {"d": DATABASE, "t": table},
    )
    if not found or not found[0][0]:
        raise BackupError(f"the restored table {table} has no data path")
    return Path(found[0][0])
