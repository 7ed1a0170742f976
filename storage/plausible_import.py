"""``beacon import plausible``: a checked archive (``storage.plausible_archive``) into
the imported tables (``storage.imported``).

The days imported are those of the archive before the site's first day of its own
events (in the site's time zone), as Plausible trims an import to before its native
stats start, and within the retention (older days would be deleted by the tables'
TTL at once). Importing the same archive again replaces its rows (its import id is
a hash of its content); an archive whose days overlap another import of the site is
refused, unless ``replace`` removes the site's earlier imports first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from storage.clickhouse import DATABASE, Store
from storage.imported import Import, insert_rows, list_imports, record_import, remove_import
from storage.plausible_archive import Archive, ArchiveError, Member, records

# Bytes of JSON rows per INSERT: well within the control socket's line (a running server inserts them).
BATCH_BYTES = 8 << 20


@dataclass(frozen=True)
class Window:
    """The days an import may write: from ``oldest`` (the retention) to before ``native_from``."""

    oldest: date
    native_from: date | None  # the site's first day of its own events; None: it has none

    def keeps(self, day: date) -> bool:
        return day >= self.oldest and (self.native_from is None or day < self.native_from)


@dataclass
class Outcome:
    import_id: int
    rows: dict[str, int] = field(default_factory=dict)  # per table, the rows written (or, dry, to write)
    trimmed: dict[str, int] = field(default_factory=dict)  # per table, the rows left out by the window
    first: date | None = None
    last: date | None = None
    replaced: tuple[int, ...] = ()  # earlier imports removed (--replace), or this one's own rows again


def first_native_day(store: Store, site: str, zone: str) -> date | None:
    ((count, first),) = store.rows(
        f"SELECT count(), toString(toDate(min(ts), {{z:String}})) FROM {DATABASE}.events WHERE site = {{s:String}}",
        {"s": site, "z": zone},
    )
    return date.fromisoformat(first) if count else None


def import_archive(
    store: Store, site: str, archive: Archive, window: Window, replace: bool = False, dry_run: bool = False
) -> Outcome:
    """Write the archive's rows within ``window`` for ``site``; ``dry_run``: count them only."""
    outcome = Outcome(archive.import_id)
    for member in archive.members:
        _count_rows(member, window, outcome)
    if outcome.first is None:
        raise ArchiveError(_nothing_left(window))
    earlier = [i for i in list_imports(store, site) if i.import_id != archive.import_id]
    overlapping = [i for i in earlier if i.first <= outcome.last and outcome.first <= i.last]
    if overlapping and not replace:
        raise ArchiveError(_overlap(overlapping))
    outcome.replaced = tuple(i.import_id for i in (earlier if replace else [])) + tuple(
        i.import_id for i in list_imports(store, site) if i.import_id == archive.import_id
    )
    if dry_run:
        return outcome
    for import_id in outcome.replaced:
        remove_import(store, site, import_id)
    try:
        for member in archive.members:
            _write(store, site, archive.import_id, member, window)
    except BaseException:
        remove_import(store, site, archive.import_id)  # nothing of a failed import is left
        raise
    files = tuple(m.name for m in archive.members)
    record_import(store, Import(site, archive.import_id, outcome.first, outcome.last, files))
    return outcome


def _count_rows(member: Member, window: Window, outcome: Outcome) -> None:
    table = member.file.table
    kept_days = [day for day in member.days if window.keeps(day)]
    outcome.rows[table] = sum(member.days[day] for day in kept_days)
    outcome.trimmed[table] = sum(member.days.values()) - outcome.rows[table]
    if kept_days:
        outcome.first = min([*kept_days, *([outcome.first] if outcome.first else [])])
        outcome.last = max([*kept_days, *([outcome.last] if outcome.last else [])])


def _write(store: Store, site: str, import_id: int, member: Member, window: Window) -> None:
    """The member's records within ``window``, each led by the site and import id, as CSV
    (the site is a checked domain name: no quote or comma to escape)."""
    columns = ["site", "import_id", *member.columns]
    lead = f'"{site}",{import_id},'
    lines: list[str] = []
    size = 0
    for day, record in records(member):
        if not window.keeps(day):
            continue
        lines.append(lead + record)
        size += len(lines[-1]) + 1
        if size >= BATCH_BYTES:
            insert_rows(store, member.file.table, columns, "\n".join(lines).encode())
            lines, size = [], 0
    if lines:
        insert_rows(store, member.file.table, columns, "\n".join(lines).encode())


def _nothing_left(window: Window) -> str:
    native = f" and before {window.native_from}, the site's first day of its own events" if window.native_from else ""
    return f"no day of the archive is left to import: only days from {window.oldest} (the retention){native} are"


def _overlap(found: list[Import]) -> str:
    listed = "; ".join(f"import {i.import_id}: {i.first}..{i.last}" for i in found)
    return f"the archive's days overlap the site's earlier import(s) ({listed}); import with --replace to replace them"


def retention_window(store: Store, site: str, zone: str, today: date, keep_days: int) -> Window:
    return Window(today - timedelta(days=keep_days - 1), first_native_day(store, site, zone))
