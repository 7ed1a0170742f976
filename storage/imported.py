"""Figures imported from a Plausible CSV archive (``beacon import plausible``): one
table per file of the archive, with the columns Plausible writes, declared here once.

The import (``storage.plausible_archive``), the export (``queries.plausible_export``),
the read side (``queries.imported``) and the tests all read ``FILES``; a test checks
that the tables of migration 0021 have exactly these columns. Each table adds
``site`` and ``import_id`` (a hash of the archive's content: importing the same
archive again replaces its rows). ``beacon.site_imports`` records each import's days.

Column order and types are Plausible's (``lib/plausible/exports.ex``, the export's
SELECTs; ``lib/plausible/imported/csv_importer.ex``, the import's structures).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from storage.clickhouse import DATABASE, Store

TEXT, COUNT = "String", "UInt64"

# Plausible's special goals whose ``url`` or ``path`` prop an archive keeps (custom_events'
# link_url and path columns): lib/plausible/goals/system_goals.ex, lib/plausible/imported.ex.
GOALS_WITH_URL = ("Outbound Link: Click", "Cloaked Link: Click", "File Download")
GOALS_WITH_PATH = ("404", "WP Form Completions", "Form: Submission")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Date | String | UInt64


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive (``imported_<table>_YYYYMMDD_YYYYMMDD.csv``) and its table."""

    table: str  # imported_visitors, …
    columns: tuple[Column, ...]  # in the order Plausible writes them
    # Columns an older Plausible did not write (pages' time on page): a header may end before them.
    optional: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.optional)


def _columns(text: str, counts: str) -> tuple[Column, ...]:
    """``date``, the text columns named in ``text``, then the counts named in ``counts``."""
    return (
        (Column("date", "Date"),)
        + tuple(Column(n, TEXT) for n in text.split())
        + tuple(Column(n, COUNT) for n in counts.split())
    )


# A visit-level file's counts, in the order Plausible's export writes them.
_VISIT_COUNTS = "visitors visits visit_duration bounces pageviews"

FILES: dict[str, ArchiveFile] = {
    f.table: f
    for f in (
        ArchiveFile("imported_visitors", _columns("", "visitors pageviews bounces visits visit_duration")),
        ArchiveFile(
            "imported_sources",
            _columns(
                "source referrer utm_source utm_medium utm_campaign utm_content utm_term",
                "pageviews visitors visits visit_duration bounces",
            ),
        ),
        ArchiveFile(
            "imported_pages",
            _columns(
                "hostname page",
                "visits visitors pageviews total_scroll_depth total_scroll_depth_visits "
                "total_time_on_page total_time_on_page_visits",
            ),
            optional=("total_time_on_page", "total_time_on_page_visits"),
        ),
        ArchiveFile(
            "imported_entry_pages", _columns("entry_page", "visitors entrances visit_duration bounces pageviews")
        ),
        ArchiveFile("imported_exit_pages", _columns("exit_page", "visitors visit_duration exits bounces pageviews")),
        ArchiveFile("imported_custom_events", _columns("name link_url path", "visitors events")),
        # city: a GeoNames id (0: unknown), as Plausible keeps it.
        ArchiveFile("imported_locations", (*_columns("country region", "city"), *_columns("", _VISIT_COUNTS)[1:])),
        ArchiveFile("imported_devices", _columns("device", _VISIT_COUNTS)),
        ArchiveFile("imported_browsers", _columns("browser browser_version", _VISIT_COUNTS)),
        ArchiveFile("imported_operating_systems", _columns("operating_system operating_system_version", _VISIT_COUNTS)),
    )
}


@dataclass(frozen=True)
class Import:
    site: str
    import_id: int
    first: date
    last: date
    files: tuple[str, ...]


def insert_rows(store: Store, table: str, columns: list[str], payload: bytes) -> None:
    """Rows of one imported table, as CSV lines of the named ``columns``."""
    store.insert_csv_rows(f"{DATABASE}.{table}", columns, payload)


def remove_import(store: Store, site: str, import_id: int) -> None:
    """Every row of one import (before it is written again, or when replaced)."""
    for table in [*FILES, "site_imports"]:
        store.command(
            f"ALTER TABLE {store.mutable(table)} DELETE WHERE site = {{s:String}} AND import_id = {{i:UInt64}} "
            "SETTINGS mutations_sync = 2",
            {"s": site, "i": import_id},
        )


def record_import(store: Store, done: Import) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.site_imports (site, import_id, first, last, files) "
        "VALUES ({s:String}, {i:UInt64}, {f:Date}, {l:Date}, {n:Array(String)})",
        {"s": done.site, "i": done.import_id, "f": done.first, "l": done.last, "n": list(done.files)},
    )


def list_imports(store: Store, site: str) -> list[Import]:
    """The site's imports, oldest days first."""
    rows = store.rows(
        f"SELECT import_id, toString(first), toString(last), files FROM {DATABASE}.site_imports FINAL "
        "WHERE site = {s:String} ORDER BY first, import_id",
        {"s": site},
    )
    return [Import(site, int(i), date.fromisoformat(f), date.fromisoformat(last), tuple(n)) for i, f, last, n in rows]


def imported_spans(store: Store) -> dict[str, tuple[date, date]]:
    """Per site with imports, the first and last day an import holds (the dashboard's toggle)."""
    rows = store.rows(
        f"SELECT site, toString(min(first)), toString(max(last)) FROM {DATABASE}.site_imports FINAL GROUP BY site"
    )
    return {site: (date.fromisoformat(first), date.fromisoformat(last)) for site, first, last in rows}
