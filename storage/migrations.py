"""Apply the ordered DDL files in ``schemas/clickhouse`` once each.

Every file is ``NNNN_name.sql``; applied versions are recorded in
``beacon.schema_migrations``, and each statement is written to be safe to re-run,
so a migration interrupted half-way is simply applied again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

from storage.clickhouse import DATABASE, Store

log = logging.getLogger("beacon.migrations")

MAX_RETENTION_DAYS = 730
# Tables holding event- or visitor-level rows, or figures made from them, with the
# column their TTL runs on (visit_builds and stats_days: the builder's record of
# the visits and days it has done, kept as long as what they describe).
TTL_TABLES = {
    "events": "ts",
    "visits": "start",
    "events_hourly": "hour",
    "stats_daily": "day",
    "stats_pairs": "day",
    "visit_builds": "until",
    "stats_days": "day",
    "dead_letters": "refused_at",
    # Plausible's figures, imported (0021; the tables of storage.imported.FILES).
    **{
        table: "date"
        for table in (
            "imported_visitors",
            "imported_sources",
            "imported_pages",
            "imported_entry_pages",
            "imported_exit_pages",
            "imported_custom_events",
            "imported_locations",
            "imported_devices",
            "imported_browsers",
            "imported_operating_systems",
        )
    },
    "site_imports": "last",
}
# The raw rows, which may be kept for less time than the rest (``raw_days``): the
# dashboards then read the visits and aggregates (docs/analytics.md).
RAW_TABLES = ("events", "dead_letters")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def available() -> list[Migration]:
    folder = resources.files("schemas") / "clickhouse"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


# The table of applied migrations (storage/cluster.py derives its cluster form).
BOOKKEEPING = (
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
    "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
    "ENGINE = ReplacingMergeTree ORDER BY version"
)


def pending(store: Store) -> list[Migration]:
    """The migrations ``migrate`` would apply now (all of them to a new store); changes nothing."""
    exists = store.rows(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'schema_migrations'", {"d": DATABASE}
    )[0][0]
    done = {row[0] for row in store.rows(f"SELECT version FROM {DATABASE}.schema_migrations")} if exists else set()
    return [m for m in available() if m.version not in done]


def migrate(store: Store) -> list[Migration]:
    """Apply pending migrations; return those applied now (empty when up to date)."""
    store.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    store.command(BOOKKEEPING)
    done = {row[0] for row in store.rows(f"SELECT version FROM {DATABASE}.schema_migrations")}
    applied = []
    for migration in available():
        if migration.version in done:
            continue
        for statement in migration.statements():
            store.command(statement)
        store.command(
            f"INSERT INTO {DATABASE}.schema_migrations (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            {"v": migration.version, "n": migration.name},
        )
        log.info("migration applied", extra={"version": migration.version, "migration": migration.name})
        applied.append(migration)
    return applied


def apply_retention(store: Store, days: int, raw_days: int | None = None) -> None:
    """Set every visitor-level table's TTL to ``days`` (at most the policy's 730), and
    the raw events' to ``raw_days`` (default: ``days``; never more)."""
    raw_days = days if raw_days is None else raw_days
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be between 1 and {MAX_RETENTION_DAYS} days, got {days}")
    if not 1 <= raw_days <= days:
        raise ValueError(f"raw retention must be between 1 and the retention ({days}) days, got {raw_days}")
    for table, column in TTL_TABLES.items():
        table_days = raw_days if table in RAW_TABLES else days
        _set_ttl(store, table, column, table_days)


def _set_ttl(store: Store, table: str, column: str, days: int) -> None:
    wanted = f"toDateTime({column}) + toIntervalDay({days})"
    current = store.rows(
        "SELECT create_table_query FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        {"d": DATABASE, "t": table},
    )
    if current and wanted in current[0][0]:
        return
    store.command(f"ALTER TABLE {DATABASE}.{table} MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY DELETE")
    log.info("retention set", extra={"table": table, "days": days})
