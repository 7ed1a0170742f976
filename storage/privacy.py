"""Data-subject requests on the store: find, export and erase a subject's rows, and
record each request in ``beacon.privacy_log``.

A subject is named by the pseudonym of a consented ID (``streams.steps.pseudonymise``):
rows hold nothing else that links them to a person, so rows without a consented ID
are anonymous and are neither exported nor erased (aggregates hold no IDs at all).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.clickhouse import DATABASE, Store
from storage.refresh import Refreshed

# Every table with subject-level rows: its ID columns, and the time its rows sort by.
SUBJECT_TABLES = {"events": ("device_id", "mac"), "dead_letters": ("device_id", "mac")}
_ORDER = {"events": "ts", "dead_letters": "refused_at"}

FIELD_MEANINGS = {
    "event_id": "unique id of the event",
    "site": "website the event was recorded on",
    "type": "pageview or event",
    "name": "event name (for events)",
    "ts": "server time the event was received (UTC)",
    "client_ts": "time reported by the browser (UTC), informative",
    "hostname": "host of the page",
    "path": "path of the page",
    "url": "page URL without query parameters other than utm_*",
    "referrer": "referring page (scheme, host, path)",
    "referrer_source": "where the visit came from",
    "utm_source": "campaign source",
    "utm_medium": "campaign medium",
    "utm_campaign": "campaign name",
    "utm_term": "campaign term",
    "utm_content": "campaign content",
    "ip_truncated": "network of the IP address (last part removed); the full address is not kept",
    "country_code": "country derived from the IP address",
    "region": "region derived from the IP address",
    "city": "city derived from the IP address",
    "browser": "browser family",
    "browser_version": "browser major version",
    "os": "operating system",
    "os_version": "operating system version",
    "device_class": "desktop, mobile or tablet",
    "language": "preferred language",
    "screen": "screen size",
    "props": "properties sent with the event",
    "device_id": "pseudonym (keyed hash) of the device ID you consented to share",
    "mac": "pseudonym (keyed hash) of the MAC address you consented to share",
    "visitor_id": "hash of site, IP address and browser with a salt of that day, destroyed within 48 hours",
    "batch_id": "technical id of the batch the event arrived in",
    "revenue_amount": "amount of money the event carried (a purchase), 0 without",
    "revenue_currency": "currency of that amount (ISO 4217)",
}


@dataclass(frozen=True)
class Request:
    action: str  # export | erase | optout | query_write
    subject: str  # pseudonym (query_write: the statement's verb and hash)
    rows: int


def _where(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"{c} = {{subject:String}}" for c in columns)


def count(store: Store, subject: str) -> int:
    return sum(
        store.rows(f"SELECT count() FROM {DATABASE}.{table} WHERE {_where(cols)}", {"subject": subject})[0][0]
        for table, cols in SUBJECT_TABLES.items()
    )


# Export formats: file extension → ClickHouse output format.
EXPORT_FORMATS = {"jsonl": "JSONEachRow", "csv": "CSVWithNames"}


@dataclass(frozen=True)
class Export:
    subject: str
    files: dict[str, bytes]  # file name (TABLE.FORMAT) → content
    table_rows: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(self.table_rows.values())

    def manifest(self) -> dict:
        tables = {
            table: {"rows": n, "files": [f for f in self.files if f.startswith(f"{table}.")]}
            for table, n in self.table_rows.items()
        }
        return {"subject": self.subject, "tables": tables, "fields": FIELD_MEANINGS, "csv": CSV_NOTE}


# Spreadsheets run a cell that starts with one of these as a formula, quoted or not;
# page paths, referrers and props are visitor-controlled text. The dashboard's CSV
# does the same (dashboard/frontend/src/csv.js).
FORMULA_START = r"^[=+\\-@\\t\\r]"  # a ClickHouse string literal of the regular expression
CSV_NOTE = (
    "In the .csv files, a text value that starts with =, +, -, @, a tab or a carriage return is "
    "written with an apostrophe before it, so that a spreadsheet shows it instead of running it "
    "as a formula. The .jsonl files hold every value exactly as stored."
)


def export(store: Store, subject: str, actor: str, formats: tuple[str, ...] = ("jsonl", "csv")) -> Export:
    """Every stored row about the subject, in each of ``formats`` (keys of
    ``EXPORT_FORMATS``), for ``beacon privacy export`` and the privacy API alike."""
    files, table_rows = {}, {}
    for table, cols in SUBJECT_TABLES.items():
        rows_sql = f"FROM {DATABASE}.{table} WHERE {_where(cols)} ORDER BY {_ORDER[table]}"
        jsonl = store.raw_query(f"SELECT * {rows_sql}", "JSONEachRow", {"subject": subject})
        table_rows[table] = jsonl.count(b"\n")  # counted here: a CSV value may hold a newline
        for fmt in formats:
            if fmt == "jsonl":
                content = jsonl
            else:
                content = store.raw_query(
                    f"SELECT {_csv_columns(store, table)} {rows_sql}", EXPORT_FORMATS[fmt], {"subject": subject}
                )
            files[f"{table}.{fmt}"] = content
    done = Export(subject, files, table_rows)
    _logged(store, Request("export", subject, done.rows), actor)
    return done


def _csv_columns(store: Store, table: str) -> str:
    """The table's columns, each text one with ``FORMULA_START`` neutralised (``CSV_NOTE``)."""
    columns = store.rows(
        "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
        {"d": DATABASE, "t": table},
    )
    return ", ".join(_csv_column(name, kind) for name, kind in columns)


def _csv_column(name: str, kind: str) -> str:
    column = f"`{name}`"
    if re.fullmatch(r"(LowCardinality\()?(Nullable\()?String\)*", kind) is None:
        return column  # numbers, dates, arrays and maps ("[…", "{…") cannot start a formula
    return f"if(match({column}, '{FORMULA_START}'), concat('\\'', {column}), {column}) AS {column}"


def write_export(done: Export, out_dir: Path) -> None:
    """The files of an export and ``manifest.json``, in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in done.files.items():
        (out_dir / name).write_bytes(content)
    (out_dir / "manifest.json").write_text(json.dumps(done.manifest(), indent=2, ensure_ascii=False))


def erase(store: Store, subject: str, actor: str) -> Request:
    """Delete the subject's rows from every table holding them; waits until done."""
    before = count(store, subject)
    for table, cols in SUBJECT_TABLES.items():
        store.command(
            f"ALTER TABLE {store.mutable(table)} DELETE WHERE {_where(cols)} SETTINGS mutations_sync = 2",
            {"subject": subject},
        )
    left = count(store, subject)
    if left:
        raise RuntimeError(f"{left} rows of the subject remain after the erasure")
    return _logged(store, Request("erase", subject, before), actor)


def erase_all(store: Store, subjects: list[str], actor: str) -> int:
    """Erase many subjects at once, one mutation a table (a restore re-applying the
    privacy journal); each is recorded in beacon.privacy_log. The rows erased."""

    def where(columns: tuple[str, ...]) -> str:
        return " OR ".join(f"{c} IN {{subjects:Array(String)}}" for c in columns)

    before = sum(
        store.rows(f"SELECT count() FROM {DATABASE}.{table} WHERE {where(cols)}", {"subjects": subjects})[0][0]
        for table, cols in SUBJECT_TABLES.items()
    )
    for table, cols in SUBJECT_TABLES.items():
        store.command(
            f"ALTER TABLE {store.mutable(table)} DELETE WHERE {where(cols)} SETTINGS mutations_sync = 2",
            {"subjects": subjects},
        )
    for subject in subjects:
        _logged(store, Request("erase", subject, 0), actor)
    return before


def record_optouts(store: Store, subjects: list[str], actor: str) -> None:
    """Objections of many subjects at once (a restore re-applying the privacy journal)."""
    for subject in subjects:
        record_optout(store, subject, actor)


def record_optout(store: Store, subject: str, actor: str) -> Request:
    """The subject objects: its events are dropped from now on (``OptOutList``)."""
    store.command(f"INSERT INTO {DATABASE}.optouts (subject) VALUES ({{s:String}})", {"s": subject})
    return _logged(store, Request("optout", subject, 0), actor)


def load_optouts(store: Store) -> frozenset[str]:
    return frozenset(s for (s,) in store.rows(f"SELECT DISTINCT subject FROM {DATABASE}.optouts"))


class OptOutList(Refreshed):
    """Keeps a filter's objections in step with ``beacon.optouts``: ``apply`` gets the
    whole current set after every change (the filter's ``FilterEnv.use_objections``);
    ``add`` makes an objection take effect in this process at once."""

    name = "optout-refresh"

    def __init__(self, store: Store, apply: Callable[[frozenset[str]], None], refresh_seconds: float = 1.0):
        super().__init__(refresh_seconds, store.writes)
        self.store = store
        self.apply = apply
        self.current: frozenset[str] = frozenset()
        # Added here but perhaps not yet visible in the store: a refresh that read the
        # table just before their INSERT must not drop them again.
        self._unconfirmed: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def load(self) -> None:
        stored = load_optouts(self.store)
        with self._lock:
            self._unconfirmed -= stored
            self.current = stored | self._unconfirmed
            self.apply(self.current)

    def add(self, subjects: list[str]) -> None:
        with self._lock:
            self._unconfirmed |= frozenset(subjects)
            self.current = self.current | frozenset(subjects)
            self.apply(self.current)


def log_write_query(store: Store, sql: str, actor: str) -> None:
    """Record a ``beacon query --write`` in beacon.privacy_log before it runs: who,
    when, and the statement's first word and SHA-256 (not its text, which may name
    a subject's identifiers; the operator's own history holds the text)."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else ""
    digest = hashlib.sha256(sql.encode()).hexdigest()[:16]
    _logged(store, Request("query_write", f"{verb} sha256:{digest}", 0), actor)


def _logged(store: Store, request: Request, actor: str) -> Request:
    store.command(
        f"INSERT INTO {DATABASE}.privacy_log (action, subject, rows, actor) "
        "VALUES ({a:String}, {s:String}, {r:UInt64}, {w:String})",
        {"a": request.action, "s": request.subject, "r": request.rows, "w": actor},
    )
    return request
