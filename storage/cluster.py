"""The single-node schema as ``ON CLUSTER`` DDL: ``beacon migrate --cluster NAME``.

The statements are derived from the same migration files as ``storage.migrations``
(``schemas/clickhouse/NNNN_name.sql``), parsed statement by statement, so the cluster
schema cannot drift from the single-node one, and a new migration needs no second
copy of its DDL. A statement this module has no cluster form for is refused with a
ValueError rather than passed on unchanged.

Layout, for every table ``beacon.X`` of the migrations (and the bookkeeping table
``beacon.schema_migrations``):

* ``beacon.X_local`` on every node (``ON CLUSTER``): the same columns, PARTITION BY,
  ORDER BY, TTL and SETTINGS, with the engine in its Replicated form
  (``MergeTree`` → ``ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}',
  '{replica}')``, ``ReplacingMergeTree(ver)`` → ``ReplicatedReplacingMergeTree(…, ver)``,
  …; the servers need the ``{shard}`` and ``{replica}`` macros). The setting
  ``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``,
  its Replicated equivalent.
* ``beacon.X`` on every node: ``Distributed(cluster, 'beacon', 'X_local', key)``
  over the local tables, under the name the application already uses, so its
  queries and INSERTs are unchanged.
* A materialized view reads the local source table and writes the local target
  table on each node: each shard aggregates its own rows (``events_hourly``: every
  shard has its own partial row per site and hour; reads merge them with GROUP BY,
  ``sum`` and ``uniqCombinedMerge``, which they already do).
* ALTERs go to ``X_local ON CLUSTER``; the column changes among them (ADD, DROP,
  MODIFY, RENAME, COMMENT COLUMN) go to the Distributed ``X`` as well, so that both
  keep the same columns. INSERTs of a migration (0009's backfill) go through the
  Distributed table, in the foreground (below).

Sharding keys (``sharding_key``). Every key is deterministic, never ``rand()``: a
retried INSERT then splits into the same per-shard blocks, which each shard's block
deduplication (by token or by content) recognises; with ``rand()`` a retry splits
differently, and a shard that got no row the first time would store the retry's.

* ``events``: ``cityHash64(site, VISITOR_KEY)``, with the query layer's visitor key
  (``queries.sessions.VISITOR_KEY``: ``visitor_id``, or the event's own hash when it
  has none). All events of one visitor on one site are on one shard, and so is
  every visit made of them.
* ``visits``: ``cityHash64(site, visitor)``: ``visitor`` holds that same key, so a
  visit lands on the shard of its events.
* every other table (no visitor column: sites, api_tokens, goals, optouts,
  privacy_log, stats_*, events_hourly, visit_builds, dead_letters,
  dashboard_sessions, report_subscriptions, spike_alerts, report_sends,
  unsubscribe_links, shares, site_embeds, schema_migrations): ``cityHash64`` of its ORDER BY key. All
  versions of a row (a ReplacingMergeTree key, a SummingMergeTree key) are then on
  one shard, where its merges and ``FINAL`` (which runs per shard) collapse them;
  with ``rand()`` a revoked token's two rows could sit on two shards and ``FINAL``
  would return both. A table replicated to every node (one ZooKeeper path for all
  shards) was the other choice for the small tables; it would need a second layout
  (no Distributed table, a path without ``{shard}``) for no gain at their size.

What the application needs on a cluster (not done here; the lead decides):

* Deduplication: the ``_local`` tables are Replicated, which drop a block whose
  ``insert_deduplication_token`` (or content hash) is among their last
  ``replicated_deduplication_window`` blocks, across replicas. Through a Distributed
  table the token reaches the shards only with a foreground INSERT:
  ``insert_distributed_sync = 1`` (named ``distributed_foreground_insert`` since
  ClickHouse 23.x; the old name stays an alias); a background INSERT is queued and
  may be batched with others, and returns before the rows are stored.
  ``deduplicate_blocks_in_dependent_materialized_views = 1`` then applies on each
  shard. The statements here set ``insert_distributed_sync = 1`` on their own INSERTs.
* Distributed tables take no mutation: ``ALTER … DELETE`` (erasure), ``DELETE
  FROM``, ``TRUNCATE`` and ``MODIFY TTL`` (``apply_retention``) must go to
  ``X_local ON CLUSTER`` (``retention_statements`` here does the TTL).
* ``x IN (SELECT … FROM beacon.events)`` inside a query on a Distributed table is
  refused by default (``distributed_product_mode = 'deny'``); ``'local'`` is right
  for the visit builder's look-ups because a visitor's events share a shard.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from storage.clickhouse import DATABASE, Store
from storage.migrations import BOOKKEEPING, MAX_RETENTION_DAYS, RAW_TABLES, TTL_TABLES, Migration, available

log = logging.getLogger("beacon.migrations")

ZOOKEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
# The query layer's visitor key (queries.sessions.VISITOR_KEY; storage may not import
# queries, a test checks they agree).
VISITOR_KEY = "if(visitor_id = 0, cityHash64(event_id), visitor_id)"
# Tables sharded by visitor: the key, and the columns it needs (events has no
# visitor_id before 0006, so its Distributed table is made once the column exists).
VISITOR_SHARDING = {
    "events": (f"cityHash64(site, {VISITOR_KEY})", ("site", "visitor_id", "event_id")),
    "visits": ("cityHash64(site, visitor)", ("site", "visitor")),
}
FOREGROUND = "SETTINGS insert_distributed_sync = 1"
# ALTER commands that change columns: the Distributed table must follow them.
COLUMN_COMMANDS = ("ADD COLUMN", "DROP COLUMN", "MODIFY COLUMN", "RENAME COLUMN", "COMMENT COLUMN", "CLEAR COLUMN")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_CREATE_TABLE = re.compile(rf"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{DATABASE}\.(\w+)\s*\(", re.I)
_CREATE_VIEW = re.compile(
    rf"CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?{DATABASE}\.(\w+)\s+TO\s+{DATABASE}\.(\w+)\s+AS\s+(.*)",
    re.I | re.S,
)
_ALTER = re.compile(rf"ALTER\s+TABLE\s+{DATABASE}\.(\w+)\s+(.*)", re.I | re.S)
_INSERT = re.compile(rf"INSERT\s+INTO\s+{DATABASE}\.(\w+)\s+(.*)", re.I | re.S)
_ENGINE = re.compile(r"\s*ENGINE\s*=\s*(\w+)\s*", re.I)
_ORDER_BY = re.compile(
    r"\bORDER\s+BY\s+(.+?)\s*(?=\bPRIMARY\s+KEY\b|\bSAMPLE\s+BY\b|\bTTL\b|\bSETTINGS\b|\bPARTITION\s+BY\b|$)",
    re.I | re.S,
)
_TABLE_REF = re.compile(rf"\b{DATABASE}\.(\w+)\b")


@dataclass
class _Table:
    columns: set[str]
    key: str  # the Distributed table's sharding key
    needs: tuple[str, ...]  # columns the key reads
    distributed: bool = False


@dataclass
class _Schema:
    """The tables seen so far while the migrations are translated in order."""

    cluster: str
    zookeeper_path: str | None
    replica_name: str
    tables: dict[str, _Table] = field(default_factory=dict)


def cluster_statements(
    cluster: str,
    folder: Path | None = None,
    zookeeper_path: str | None = ZOOKEEPER_PATH,
    replica_name: str = REPLICA_NAME,
) -> list[str]:
    """Every statement that builds the schema on ``cluster``, in order: the database,
    the bookkeeping table, then each migration's (``folder``: the migration files,
    default the package's ``schemas/clickhouse``). ``zookeeper_path`` None: the
    servers' ``default_replica_path`` / ``default_replica_name``."""
    schema = _new_schema(cluster, zookeeper_path, replica_name)
    statements = _preamble(schema)
    for _, translated in _translate(schema, _migrations(folder)):
        statements.extend(translated)
    return statements


def migrate_cluster(
    store: Store,
    cluster: str,
    folder: Path | None = None,
    zookeeper_path: str | None = ZOOKEEPER_PATH,
    replica_name: str = REPLICA_NAME,
) -> list[Migration]:
    """Apply the pending migrations to ``cluster`` through ``store`` (any node of it);
    return those applied now (empty when up to date). Recorded, as by ``migrate``,
    in ``beacon.schema_migrations``, here the Distributed table over the replicated
    ``schema_migrations_local``; every statement is safe to re-run."""
    schema = _new_schema(cluster, zookeeper_path, replica_name)
    for statement in _preamble(schema):
        store.command(statement)
    done = {row[0] for row in store.rows(f"SELECT version FROM {DATABASE}.schema_migrations")}
    applied = []
    # Every migration is translated, applied or not: the later ones depend on the
    # tables the earlier ones made.
    for migration, statements in _translate(schema, _migrations(folder)):
        if migration.version in done:
            continue
        for statement in statements:
            store.command(statement)
        store.command(
            f"INSERT INTO {DATABASE}.schema_migrations (version, name) {FOREGROUND} "
            "VALUES ({v:UInt32}, {n:String})",
            {"v": migration.version, "n": migration.name},
        )
        log.info(
            "migration applied", extra={"version": migration.version, "migration": migration.name, "cluster": cluster}
        )
        applied.append(migration)
    return applied


def retention_statements(cluster: str, days: int, raw_days: int | None = None) -> list[str]:
    """``apply_retention`` for a cluster: the TTLs go to the local tables (a
    Distributed table has none), on every node."""
    raw_days = days if raw_days is None else raw_days
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be between 1 and {MAX_RETENTION_DAYS} days, got {days}")
    if not 1 <= raw_days <= days:
        raise ValueError(f"raw retention must be between 1 and the retention ({days}) days, got {raw_days}")
    on_cluster = _on_cluster(cluster)
    return [
        f"ALTER TABLE {DATABASE}.{table}_local {on_cluster} MODIFY TTL toDateTime({column}) + "
        f"INTERVAL {raw_days if table in RAW_TABLES else days} DAY DELETE"
        for table, column in TTL_TABLES.items()
    ]


def migrations_in(folder: Path) -> list[Migration]:
    """The migration files of ``folder``, ordered as ``storage.migrations.available``
    orders the package's."""
    found = []
    for entry in Path(folder).iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


# --- translation ---------------------------------------------------------------------


def _migrations(folder: Path | None) -> list[Migration]:
    return available() if folder is None else migrations_in(folder)


def _new_schema(cluster: str, zookeeper_path: str | None, replica_name: str) -> _Schema:
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise ValueError(f"cluster name {cluster!r}: letters, digits, '_', '.' and '-' only")
    return _Schema(cluster, zookeeper_path, replica_name)


def _preamble(schema: _Schema) -> list[str]:
    database = f"CREATE DATABASE IF NOT EXISTS {DATABASE} {_on_cluster(schema.cluster)}"
    return [database] + _statement(schema, BOOKKEEPING)


def _translate(schema: _Schema, migrations: list[Migration]) -> list[tuple[Migration, list[str]]]:
    translated = []
    for migration in migrations:
        statements: list[str] = []
        for statement in migration.statements():
            try:
                statements.extend(_statement(schema, statement))
            except ValueError as error:
                raise ValueError(f"migration {migration.version:04d}_{migration.name}: {error}") from None
        translated.append((migration, statements))
    waiting = [name for name, table in schema.tables.items() if not table.distributed]
    if waiting:
        raise ValueError(f"no Distributed table for {waiting}: their sharding keys read columns they never get")
    return translated


def _statement(schema: _Schema, statement: str) -> list[str]:
    """The cluster form of one migration statement, then any Distributed table it
    made possible."""
    if match := _CREATE_TABLE.match(statement):
        out = [_create_table(schema, match.group(1), statement, match.end() - 1)]
    elif match := _CREATE_VIEW.match(statement):
        out = [_create_view(schema, *match.groups())]
    elif match := _ALTER.match(statement):
        out = _alter(schema, *match.groups())
    elif match := _INSERT.match(statement):
        out = [_insert(schema, *match.groups())]
    else:
        raise ValueError(f"no cluster form for: {statement[:80]!r}")
    return out + _distributed_tables(schema)


def _create_table(schema: _Schema, name: str, statement: str, open_paren: int) -> str:
    close = _closing(statement, open_paren)
    columns = statement[open_paren : close + 1]
    rest = statement[close + 1 :]
    engine = _ENGINE.match(rest)
    if engine is None or not engine.group(1).endswith("MergeTree") or engine.group(1).startswith("Replicated"):
        raise ValueError(f"{name}: only a (non-replicated) MergeTree family engine has a Replicated form")
    args, after = _engine_args(rest, engine.end())
    replicated = f"ENGINE = Replicated{engine.group(1)}({', '.join(_replication(schema) + args)})"
    clauses = re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", after)
    schema.tables[name] = _Table(_column_names(columns[1:-1]), *_sharding(name, clauses))
    return (
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name}_local {_on_cluster(schema.cluster)}\n"
        f"{columns}\n{replicated}\n{clauses.strip()}"
    )


def _create_view(schema: _Schema, view: str, target: str, select: str) -> str:
    # On each node, from the local source table into the local target table.
    local_select = _TABLE_REF.sub(lambda m: f"{DATABASE}.{_local(schema, m.group(1))}", select)
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.{view} {_on_cluster(schema.cluster)} "
        f"TO {DATABASE}.{_local(schema, target)} AS\n{local_select}"
    )


def _alter(schema: _Schema, name: str, commands: str) -> list[str]:
    table = _known(schema, name)
    parts = [c.strip() for c in _split_top_level(commands)]
    local = [re.sub(r"\bnon_replicated_deduplication_window\b", "replicated_deduplication_window", c) for c in parts]
    on_cluster = _on_cluster(schema.cluster)
    out = [f"ALTER TABLE {DATABASE}.{name}_local {on_cluster} {', '.join(local)}"]
    column_changes = [c for c in parts if re.sub(r"\s+", " ", c).upper().startswith(COLUMN_COMMANDS)]
    for change in column_changes:
        _follow_column_change(table, change)
    if column_changes and table.distributed:  # else the Distributed table, made later, copies them
        out.append(f"ALTER TABLE {DATABASE}.{name} {on_cluster} {', '.join(column_changes)}")
    return out


def _insert(schema: _Schema, name: str, rest: str) -> str:
    # Through the Distributed table, in the foreground: stored when the statement returns.
    if not _known(schema, name).distributed:
        raise ValueError(f"INSERT into {name} before its Distributed table exists")
    columns = ""
    if rest.startswith("(") and not re.match(r"\(\s*(SELECT|WITH)\b", rest, re.I):
        close = _closing(rest, 0)
        columns, rest = rest[: close + 1] + " ", rest[close + 1 :].lstrip()
    return f"INSERT INTO {DATABASE}.{name} {columns}{FOREGROUND}\n{rest}"


def _distributed_tables(schema: _Schema) -> list[str]:
    """A Distributed table for each local table whose sharding key can now be read."""
    out = []
    for name, table in schema.tables.items():
        if not table.distributed and set(table.needs) <= table.columns:
            table.distributed = True
            out.append(
                f"CREATE TABLE IF NOT EXISTS {DATABASE}.{name} {_on_cluster(schema.cluster)} "
                f"AS {DATABASE}.{name}_local "
                f"ENGINE = Distributed('{schema.cluster}', '{DATABASE}', '{name}_local', {table.key})"
            )
    return out


# --- pieces --------------------------------------------------------------------------


def _on_cluster(cluster: str) -> str:
    return f"ON CLUSTER '{cluster}'"


def _replication(schema: _Schema) -> list[str]:
    if schema.zookeeper_path is None:
        return []
    return [f"'{schema.zookeeper_path}'", f"'{schema.replica_name}'"]


def _known(schema: _Schema, name: str) -> _Table:
    if name not in schema.tables:
        raise ValueError(f"{DATABASE}.{name} is not a table created by an earlier statement")
    return schema.tables[name]


def _local(schema: _Schema, name: str) -> str:
    _known(schema, name)
    return f"{name}_local"


def _sharding(name: str, clauses: str) -> tuple[str, tuple[str, ...]]:
    """The sharding key of ``name`` and the columns it reads (module docstring)."""
    if name in VISITOR_SHARDING:
        return VISITOR_SHARDING[name]
    order = _ORDER_BY.search(clauses)
    if order is None:
        raise ValueError(f"{name}: no ORDER BY to shard by")
    key = order.group(1).strip()
    if key.startswith("(") and _closing(key, 0) == len(key) - 1:
        key = key[1:-1].strip()
    if not key or key.lower() == "tuple()":
        raise ValueError(f"{name}: ORDER BY tuple() gives no sharding key; add it to VISITOR_SHARDING")
    return f"cityHash64({key})", ()


def _engine_args(rest: str, at: int) -> tuple[list[str], str]:
    """The engine's arguments (none when it has no parentheses) and what follows them."""
    if at < len(rest) and rest[at] == "(":
        close = _closing(rest, at)
        inner = rest[at + 1 : close].strip()
        return ([a.strip() for a in _split_top_level(inner)] if inner else []), rest[close + 1 :]
    return [], rest[at:]


def _column_names(columns: str) -> set[str]:
    names = set()
    for item in _split_top_level(columns):
        word = item.split()[0].strip('`"') if item.strip() else ""
        if word and word.upper() not in ("INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY"):
            names.add(word)
    return names


def _follow_column_change(table: _Table, change: str) -> None:
    words = change.split()
    command = f"{words[0]} {words[1]}".upper()
    rest = [w for w in words[2:] if w.upper() not in ("IF", "NOT", "EXISTS")]
    if not rest:
        return
    column = rest[0].strip('`"')
    if command == "ADD COLUMN":
        table.columns.add(column)
    elif command == "DROP COLUMN":
        table.columns.discard(column)
    elif command == "RENAME COLUMN" and len(rest) >= 3:
        table.columns.discard(column)
        table.columns.add(rest[2].strip('`"'))


def _closing(text: str, open_at: int) -> int:
    """Index of the parenthesis closing the one at ``open_at`` (quotes respected)."""
    depth, quote = 0, ""
    for i in range(open_at, len(text)):
        char = text[i]
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {text[open_at : open_at + 60]!r}")


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]
