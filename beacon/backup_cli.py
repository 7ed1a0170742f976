"""``beacon backup create | list | verify | restore | prune`` (storage/backup.py)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import click

from beacon.config import Settings, options
from storage import backup
from storage.backup_restore import restore as restore_backup
from storage.clickhouse import ClickHouseStore, dsn_for_data_dir
from storage.control import connect_if_served
from storage.privacy_journal import PrivacyJournal


def _settings(values: dict) -> Settings:
    try:
        settings = Settings.from_options(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if settings.backup_dir is None:
        raise click.UsageError("--backup-dir (or BEACON_BACKUP_DIR) is required")
    return settings


@click.group("backup")
def backup_group() -> None:
    """Backups of the embedded store (frozen parts, incremental after the first, each
    file checked by its SHA-256), and the privacy journal beside them that keeps a
    restore from bringing back people erased after the backup was made."""


@backup_group.command("create")
@options("data_dir", "backup_dir")
def create(**values) -> None:
    """Back up the store of --data-dir. While beacon serve runs, the server makes it:
    every beacon it accepted before the command is in the backup."""
    settings = _settings(values)
    remote = connect_if_served(settings.data_dir)
    try:
        if remote is not None:
            made = remote.request("backup_create", backup_dir=str(settings.backup_dir.resolve()))
        else:
            made = _create_here(settings)
    except (backup.BackupError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"backup failed: {exc}") from exc
    finally:
        if remote is not None:
            remote.close()
    click.echo(
        f"{made['backup_id']}\t{_size(made['total_bytes'])} ({_size(made['added_bytes'])} new)\t"
        f"{made['rows'].get('events', 0)} events"
    )


def _create_here(settings: Settings) -> dict:
    from beacon.backup_service import summary

    if not (settings.data_dir / "clickhouse").is_dir():
        raise click.ClickException(f"no store in {settings.data_dir}")
    store = ClickHouseStore(dsn_for_data_dir(settings.data_dir))
    try:
        manifest = backup.create(
            backup.Source(store, settings.data_dir, pause_inserts=store.paused_inserts), settings.backup_dir
        )
        PrivacyJournal(settings.backup_dir).sync(store)
    finally:
        store.close()
    return summary(manifest)


@backup_group.command("list")
@options("backup_dir")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per backup.")
def list_backups(as_json: bool, **values) -> None:
    """The backups, oldest first: when cut (UTC), size, bytes new in it, events."""
    settings = _settings(values)
    if not as_json:
        click.echo("id\tcut at (UTC)\tsize\tnew\tevents\tschema")
    for backup_id in backup.backup_ids(settings.backup_dir):
        m = backup.read_manifest(settings.backup_dir, backup_id)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "backup_id": m.backup_id,
                        "created_at": m.created_at,
                        "total_bytes": m.total_bytes(),
                        "added_bytes": m.bytes_copied,
                        "rows": m.rows,
                        "schema_version": m.schema_version,
                    }
                )
            )
        else:
            click.echo(
                f"{m.backup_id}\t{_time(m.created_at)}\t{_size(m.total_bytes())}\t{_size(m.bytes_copied)}\t"
                f"{m.rows.get('events', 0)}\t{m.schema_version:04d}"
            )


@backup_group.command("verify")
@options("backup_dir")
@click.argument("backup_ids", nargs=-1)
def verify(backup_ids: tuple[str, ...], **values) -> None:
    """Check every file of the named backups (default: all) against their manifests.
    Exits 1 when one fails."""
    settings = _settings(values)
    chosen = list(backup_ids) or backup.backup_ids(settings.backup_dir)
    if not chosen:
        raise click.ClickException(f"no backup in {settings.backup_dir}")
    failed = False
    for backup_id in chosen:
        try:
            problems = backup.verify(settings.backup_dir, backup_id)
        except backup.BackupError as exc:
            problems = [str(exc)]
        failed = failed or bool(problems)
        click.echo(f"{backup_id}\t{'ok' if not problems else 'FAILED'}")
        for problem in problems:
            click.echo(f"  {problem}", err=True)
    sys.exit(1 if failed else 0)


@backup_group.command("restore")
@options("backup_dir", "data_dir")
@click.argument("backup_id", required=False)
def restore(backup_id: str | None, **values) -> None:
    """Rebuild a store in --data-dir (a new directory) from BACKUP_ID (default: the
    newest), after checking its files; the erasures and objections of the privacy
    journal made since the backup are applied again before anything can read it."""
    settings = _settings(values)
    ids = backup.backup_ids(settings.backup_dir)
    backup_id = backup_id or (ids[-1] if ids else None)
    if backup_id is None:
        raise click.ClickException(f"no backup in {settings.backup_dir}")
    if (served := connect_if_served(settings.data_dir)) is not None:
        served.close()
        raise click.ClickException(f"a server owns {settings.data_dir}: restore into a new directory")
    try:
        done = restore_backup(settings.backup_dir, backup_id, settings.data_dir)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"restored {done.backup_id} into {settings.data_dir}: {done.rows.get('events', 0)} events; "
        f"{done.journal_entries} privacy request(s) re-applied ({done.erased_rows} row(s) erased)"
        + "".join(f"\n  migrated {m}" for m in done.migrations)
    )
    if not (settings.data_dir / "id.key").exists():
        click.echo(
            "Backups never hold the pseudonym key: copy it from where you keep it to "
            f"{settings.data_dir}/id.key "
            "(mode 0600), or give --id-key, before `beacon serve`; else a new key is made and device-ID "
            "requests cannot find the restored rows.",
            err=True,
        )


@backup_group.command("prune")
@options("backup_dir", "backup_keep", "retention_days")
def prune(**values) -> None:
    """Delete all but the --backup-keep newest backups, and any older than
    --retention-days; then the journal entries no kept backup needs."""
    from beacon.backup_service import prune as prune_backups

    settings = _settings(values)
    for backup_id in prune_backups(settings.backup_dir, settings.backup_keep, settings.retention_days):
        click.echo(f"deleted {backup_id}")


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
