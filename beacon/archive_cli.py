"""``beacon import plausible`` and ``beacon export plausible``: Plausible's CSV archive
in both directions (docs/plausible-archive.md)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from beacon.config import Settings, options
from beacon.store_access import open_store
from common import clock
from storage.clickhouse import Store
from storage.sites import Site, find_site, normalise_domain


def _settings(values: dict) -> Settings:
    try:
        return Settings.from_options(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _site(store: Store, domain: str) -> Site:
    try:
        found = find_site(store, normalise_domain(domain))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--site") from exc
    if found is None:
        raise click.BadParameter(f"{domain} is not a registered site (beacon sites add {domain})", param_hint="--site")
    return found


def _day(given: datetime | None) -> date | None:
    return given.date() if given is not None else None


def _today(site: Site) -> date:
    return datetime.fromtimestamp(clock.now(), site.zone).date()


@click.group("import")
def import_group() -> None:
    """Import another product's archive into a site's figures."""


@import_group.command("plausible")
@options("data_dir", "clickhouse", "retention_days", "archive_max_bytes", "archive_max_ratio")
@click.option("--site", "domain", required=True, help="The registered site the figures are imported into.")
@click.option("--replace", is_flag=True, help="Remove the site's earlier imports first (else overlapping days refuse).")
@click.option("--dry-run", is_flag=True, help="Check the archive and say what would be imported; store nothing.")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_plausible(archive: Path, domain: str, replace: bool, dry_run: bool, **values) -> None:
    """Import ARCHIVE, a Plausible CSV export (a zip of imported_*.csv), into --site.

    Only days before the site's first day of its own events are imported (Plausible's
    rule), and within the retention. Importing the same archive again replaces it."""
    from storage.plausible_archive import ArchiveError, read_archive
    from storage.plausible_import import import_archive, retention_window

    settings = _settings(values)
    try:
        checked = read_archive(archive, settings.archive_max_bytes, settings.archive_max_ratio)
    except ArchiveError as exc:
        raise click.ClickException(f"{archive.name}: {exc} (nothing imported)") from exc
    with open_store(settings, migrated=True) as store:
        site = _site(store, domain)
        window = retention_window(store, site.domain, site.timezone, _today(site), settings.retention_days)
        try:
            outcome = import_archive(store, site.domain, checked, window, replace=replace, dry_run=dry_run)
        except ArchiveError as exc:
            raise click.ClickException(f"{archive.name}: {exc} (nothing imported)") from exc
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{verb} {archive.name} into {site.domain}: days {outcome.first}..{outcome.last}, import {outcome.import_id}"
    )
    for table, count in outcome.rows.items():
        left = outcome.trimmed.get(table, 0)
        click.echo(f"  {table}\t{count} rows" + (f"\t({left} outside the days imported)" if left else ""))
    if outcome.replaced:
        click.echo(f"  replaced import(s): {', '.join(str(i) for i in outcome.replaced)}")


@click.group("export")
def export_group() -> None:
    """Export a site's figures in another product's archive format."""


@export_group.command("plausible")
@options("data_dir", "clickhouse")
@click.option("--site", "domain", required=True, help="The registered site to export.")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day (site's zone); default: its first.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day (site's zone); default: its last.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The zip to write.")
def export_plausible(domain: str, first: datetime | None, last: datetime | None, output: Path, **values) -> None:
    """Write --site's own figures as a Plausible CSV archive (imported_*.csv), which
    Plausible's CSV import reads, days cut in the site's time zone."""
    from queries.plausible_export import archive_files, export_span
    from storage.plausible_archive import write_archive

    with open_store(_settings(values), must_exist=True) as store:
        site = _site(store, domain)
        try:
            lo, hi = export_span(store, site.domain, site.timezone, _day(first), _day(last))
        except ValueError as exc:
            raise click.ClickException(f"{exc} (--from, --to)") from exc
        files = archive_files(store, site.domain, site.timezone, lo, hi)
    write_archive(output, files)
    rows = sum(data.count(b"\n") - 1 for data in files.values())
    click.echo(f"{output}\t{site.domain}\tdays {lo}..{hi}\t{len(files)} files, {rows} rows")
