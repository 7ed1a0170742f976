"""Backups of an embedded store: frozen parts, copied once, checked by their own hashes.

Why frozen parts and not ClickHouse's ``BACKUP … TO File(…)``: chDB 4.4 refuses the
``File`` engine until ``backups.allowed_path`` is set in the engine's server
configuration, which an embedded session cannot set; ``ALTER TABLE … FREEZE`` works
as it is. A freeze hard-links every active part of a table into ``shadow/NAME``, in
milliseconds and without stopping inserts for longer than that.

A backup directory holds one folder per backup (``20261207T181500Z/``, made as
``….partial`` and renamed once complete) and the privacy journal
(``storage.privacy_journal``)::

    BACKUP_DIR/
      journal.jsonl
      20261207T181500Z/
        manifest.json          tables (DDL, parts, each file's size and SHA-256)
        manifest.sha256        SHA-256 of manifest.json
        tables/TABLE/PART/…    the part's files

Neither the pseudonym key (``DATA_DIR/id.key``) nor the visitor salts are ever in a
backup: salts are destroyed within 48 hours, backups included, and the key is kept
apart from the data it keys (docs/production.md), so that a backup that leaks links
no pseudonym to a device.

MergeTree parts never change once written (a merge or a mutation writes a new part
under a new name), so a part that the previous backup holds under the same name and
with the same ``checksums.txt`` is hard-linked from there instead of copied: after
the first, a backup costs about the data written since the last one, yet each
backup is complete on its own and can be deleted without touching the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from storage.clickhouse import DATABASE, Store

MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest.sha256"
PARTIAL = ".partial"
FORMAT_VERSION = 1
_CHUNK = 1 << 20
_PLAIN = re.compile(r"[A-Za-z0-9_]+(-[0-9]+)?")


class BackupError(RuntimeError):
    """A backup cannot be made, read or restored; the message says why."""


class BackupCancelled(BackupError):
    """The process stops: the backup under way was abandoned and removed."""


def plain_name(name: str) -> str:
    """A table or part name read from a manifest, checked before it goes into SQL or a path."""
    if not _PLAIN.fullmatch(name):
        raise BackupError(f"unexpected name in a backup manifest: {name!r}")
    return name


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass
class TableEntry:
    engine: str
    create: str  # CREATE statement, as system.tables has it
    parts: dict[str, dict[str, FileEntry]] = field(default_factory=dict)  # part → relative file → entry


@dataclass
class Manifest:
    backup_id: str
    created_at: float  # epoch seconds: every row stored before it is in the backup
    schema_version: int
    tables: dict[str, TableEntry]
    views: list[str]  # CREATE statements of views, made after the tables they read and feed
    rows: dict[str, int]  # table → rows, from the parts' count.txt
    bytes_copied: int  # new bytes of this backup (the rest is hard-linked from the previous one)
    format_version: int = FORMAT_VERSION

    def total_bytes(self) -> int:
        return sum(f.size for t in self.tables.values() for files in t.parts.values() for f in files.values())

    def to_json(self) -> bytes:
        tables = {
            name: {
                "engine": t.engine,
                "create": t.create,
                "parts": {p: {rel: [f.size, f.sha256] for rel, f in files.items()} for p, files in t.parts.items()},
            }
            for name, t in self.tables.items()
        }
        body = {
            "format_version": self.format_version,
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "schema_version": self.schema_version,
            "tables": tables,
            "views": self.views,
            "rows": self.rows,
            "bytes_copied": self.bytes_copied,
        }
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        body = json.loads(raw)
        if body.get("format_version") != FORMAT_VERSION:
            raise BackupError(f"backup format {body.get('format_version')} is not {FORMAT_VERSION}")
        tables = {
            name: TableEntry(
                t["engine"],
                t["create"],
                {p: {rel: FileEntry(*entry) for rel, entry in files.items()} for p, files in t["parts"].items()},
            )
            for name, t in body["tables"].items()
        }
        return cls(
            body["backup_id"],
            body["created_at"],
            body["schema_version"],
            tables,
            body["views"],
            body["rows"],
            body["bytes_copied"],
        )


# --- reading a backup directory -----------------------------------------------------------


def backup_ids(backup_dir: Path) -> list[str]:
    """Complete backups, oldest first (their names sort by time)."""
    if not backup_dir.is_dir():
        return []
    return sorted(
        p.name for p in backup_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file() and not p.name.endswith(PARTIAL)
    )


def read_manifest(backup_dir: Path, backup_id: str) -> Manifest:
    folder = backup_dir / backup_id
    try:
        raw = (folder / MANIFEST).read_bytes()
        expected = (folder / MANIFEST_HASH).read_text().strip()
    except FileNotFoundError as exc:
        raise BackupError(f"no backup {backup_id} in {backup_dir}") from exc
    if hashlib.sha256(raw).hexdigest() != expected:
        raise BackupError(f"backup {backup_id}: manifest.json does not match manifest.sha256")
    return Manifest.from_json(raw)


def latest(backup_dir: Path) -> Manifest | None:
    ids = backup_ids(backup_dir)
    return read_manifest(backup_dir, ids[-1]) if ids else None


# --- making one ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What a backup is made of: the store, where its files lie, and how to make the
    cut consistent. ``flush``: store every beacon accepted so far (the owner's
    pipeline). ``pause_inserts``: a context during which no INSERT runs, so that every
    table is frozen at the same point (a materialized view's target agrees with its
    source)."""

    store: Store
    data_dir: Path
    flush: Callable[[], None] = lambda: None
    # Yields how to run the FREEZE statements meanwhile (None: ``store.command``).
    pause_inserts: Callable[[], AbstractContextManager] = nullcontext
    cancelled: Callable[[], bool] = lambda: False  # asked between parts: the server is stopping
    # Runs the copy (the long part): in the server, in a thread of low OS priority.
    copying: Callable[[Callable[[], Manifest]], Manifest] = lambda copy: copy()


def create(
    source: Source, backup_dir: Path, clock: Callable[[], float] = time.time, snapshot: bool = False
) -> Manifest:
    """Make a backup of the store into ``backup_dir`` and return its manifest.
    ``snapshot``: hard-link the frozen files instead of copying them, for a copy on the
    store's own disk that costs no space (before an upgrade); no protection from a
    lost disk."""
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tables, views = _schema(source.store)
    previous = latest(backup_dir)
    backup_id = _new_id(backup_dir, clock())
    shadow = _disk_path(source.store) / "shadow" / backup_id
    folder = backup_dir / (backup_id + PARTIAL)
    source.flush()
    try:
        with source.pause_inserts() as run:
            created_at = clock()
            for name in tables:  # the name is digits, T and Z
                (run or source.store.command)(f"ALTER TABLE {DATABASE}.{name} FREEZE WITH NAME '{backup_id}'")
        manifest = source.copying(
            lambda: _write(source, tables, views, shadow, folder, previous, backup_id, created_at, snapshot)
        )
        folder.rename(backup_dir / backup_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(shadow, ignore_errors=True)
    _fsync_dir(backup_dir)
    return manifest


def _write(
    source: Source,
    tables: dict[str, tuple[str, str, str]],
    views: list[str],
    shadow: Path,
    folder: Path,
    previous: Manifest | None,
    backup_id: str,
    created_at: float,
    snapshot: bool,
) -> Manifest:
    folder.mkdir()
    entries, rows, copied = {}, {}, 0
    for name, (uuid, engine, create_sql) in tables.items():
        entries[name] = TableEntry(engine, create_sql)
        frozen = shadow / "store" / uuid[:3] / uuid
        parts = sorted(p.name for p in frozen.iterdir()) if frozen.is_dir() else []
        for part in parts:
            if source.cancelled():
                raise BackupCancelled("the backup was abandoned: the server is stopping")
            target = folder / "tables" / name / part
            earlier = _same_part_in(previous, folder.parent, name, part, frozen / part)
            entries[name].parts[part], n = (
                _link_part(*earlier, target) if earlier else _copy_part(frozen / part, target, snapshot)
            )
            copied += n
        rows[name] = sum(_part_rows(folder / "tables" / name / part) for part in parts)
    manifest = Manifest(backup_id, created_at, _schema_version(source.store), entries, views, rows, copied)
    raw = manifest.to_json()
    _write_durably(folder / MANIFEST, raw)
    _write_durably(folder / MANIFEST_HASH, (hashlib.sha256(raw).hexdigest() + "\n").encode())
    for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(directory)
    return manifest


def _same_part_in(
    previous: Manifest | None, backup_dir: Path, table: str, part: str, frozen_part: Path
) -> tuple[Path, dict[str, FileEntry]] | None:
    """The previous backup's copy of this part and its files, when it holds the very
    same part (same name, same checksums.txt)."""
    if previous is None or part not in (earlier := previous.tables.get(table, TableEntry("", ""))).parts:
        return None
    files = earlier.parts[part]
    checksums = frozen_part / "checksums.txt"
    if "checksums.txt" not in files or not checksums.is_file() or _sha256(checksums) != files["checksums.txt"].sha256:
        return None
    return backup_dir / previous.backup_id / "tables" / table / part, files


def _link_part(earlier: Path, files: dict[str, FileEntry], target: Path) -> tuple[dict[str, FileEntry], int]:
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(earlier / rel, target / rel)
    return dict(files), 0


def _copy_part(frozen_part: Path, target: Path, link: bool) -> tuple[dict[str, FileEntry], int]:
    files = {}
    for path in sorted(p for p in frozen_part.rglob("*") if p.is_file()):
        rel = path.relative_to(frozen_part).as_posix()
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.link(path, target / rel)
            files[rel] = FileEntry(path.stat().st_size, _sha256(path))
        else:
            files[rel] = _copy_hashing(path, target / rel)
    return files, 0 if link else sum(f.size for f in files.values())


def _copy_hashing(source: Path, target: Path) -> FileEntry:
    """Copy and hash one file, and make it durable at once: dirty pages of a large
    copy left to the end would make the kernel throttle every writer, the store's too."""
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as src, open(target, "xb") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return FileEntry(size, digest.hexdigest())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _part_rows(part: Path) -> int:
    count = part / "count.txt"
    return int(count.read_text() or 0) if count.is_file() else 0


def _schema(store: Store) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """The database's MergeTree tables (name → uuid, engine, CREATE) and its views' CREATE statements."""
    listed = store.rows(
        "SELECT name, toString(uuid), engine, create_table_query FROM system.tables "
        "WHERE database = {d:String} ORDER BY name",
        {"d": DATABASE},
    )
    tables = {name: (uuid, engine, sql) for name, uuid, engine, sql in listed if engine.endswith("MergeTree")}
    views = [sql for _, _, engine, sql in listed if engine in ("MaterializedView", "View")]
    others = [
        f"{name} ({engine})"
        for name, _, engine, _ in listed
        if name not in tables and engine not in ("MaterializedView", "View")
    ]
    if others:  # a table no backup would hold: refuse, rather than make a backup that lacks it
        raise BackupError(f"tables of an engine backups do not cover: {', '.join(others)}")
    return tables, views


def _schema_version(store: Store) -> int:
    return int(store.rows(f"SELECT max(version) FROM {DATABASE}.schema_migrations")[0][0] or 0)


def _disk_path(store: Store) -> Path:
    return Path(store.rows("SELECT path FROM system.disks WHERE name = 'default'")[0][0])


def _new_id(backup_dir: Path, now: float) -> str:
    """A name that sorts by time; a second backup within the same second waits for the next."""
    while True:
        backup_id = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if not (backup_dir / backup_id).exists() and not (backup_dir / (backup_id + PARTIAL)).exists():
            return backup_id
        now += 1


def _write_durably(path: Path, content: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- checking, listing, pruning ---------------------------------------------------------


def verify(backup_dir: Path, backup_id: str) -> list[str]:
    """Every file of the backup against its manifest (size and SHA-256); the problems
    found (empty: the backup is intact)."""
    manifest = read_manifest(backup_dir, backup_id)
    folder = backup_dir / backup_id / "tables"
    problems = []
    for table, entry in manifest.tables.items():
        for part, files in entry.parts.items():
            for rel, expected in files.items():
                path = folder / table / part / rel
                if not path.is_file():
                    problems.append(f"{table}/{part}/{rel}: missing")
                elif path.stat().st_size != expected.size or _sha256(path) != expected.sha256:
                    problems.append(f"{table}/{part}/{rel}: content differs from the manifest")
    return problems


def prune(backup_dir: Path, keep: int, retention_days: int, now: float | None = None) -> list[str]:
    """Delete all but the ``keep`` newest backups, and every backup older than
    ``retention_days`` (a backup is storage too: the retention promise covers it).
    Returns the deleted ids."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    now = time.time() if now is None else now
    ids = backup_ids(backup_dir)
    too_old = {i for i in ids if read_manifest(backup_dir, i).created_at < now - retention_days * 86400}
    doomed = sorted(set(ids[:-keep]) | too_old)
    for backup_id in doomed:
        shutil.rmtree(backup_dir / backup_id)
    for leftover in backup_dir.glob("*" + PARTIAL):  # left by a crash; a day old, so no backup is making it
        if leftover.stat().st_mtime < now - 86400:
            shutil.rmtree(leftover, ignore_errors=True)
    return doomed
