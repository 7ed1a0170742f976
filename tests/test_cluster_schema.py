"""The cluster schema (storage/cluster.py) for a cluster ``beacon_cluster`` (2 shards ×
2 replicas on the servers; the DDL does not depend on the layout, only on the name
and the ``{shard}`` / ``{replica}`` macros). chDB has no cluster and no ZooKeeper, so
the statements are checked in two ways: each one parses (``formatQuery``), and the
whole sequence is replayed in a scratch database of the embedded engine with the
cluster parts taken out (no ON CLUSTER, Replicated engines in their plain form, a
Null table standing in for each Distributed one), beside a replay of the
single-node migrations in another scratch database, so their tables and columns
can be compared."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from storage import cluster
from storage.clickhouse import ClickHouseStore
from storage.migrations import MAX_RETENTION_DAYS, TTL_TABLES, available

CLUSTER = "beacon_cluster"
REPLICATION = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
LOCAL_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS beacon\.(\w+)_local ON CLUSTER 'beacon_cluster'\n")
DISTRIBUTED = re.compile(
    r"CREATE TABLE IF NOT EXISTS beacon\.(\w+) ON CLUSTER 'beacon_cluster' AS beacon\.(\w+) "
    r"ENGINE = Distributed\('beacon_cluster', 'beacon', '(\w+)', (.+)\)$",
    re.S,
)
VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS beacon\.(\w+) ON CLUSTER 'beacon_cluster' "
    r"TO beacon\.(\w+) AS\n(.*)",
    re.S,
)
SINGLE, REPLAY = "cluster_check_single", "cluster_check_replay"


@pytest.fixture(scope="module")
def statements() -> list[str]:
    return cluster.cluster_statements(CLUSTER)


@pytest.fixture(scope="module")
def replayed(store, statements):
    """The single-node migrations in SINGLE, the cluster statements made local in
    REPLAY; the Distributed tables' sharding keys, evaluated on their local tables."""
    for database in (SINGLE, REPLAY):
        store.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        store.command(f"CREATE DATABASE {database}")
    for statement in [cluster.BOOKKEEPING] + [s for m in available() for s in m.statements()]:
        store.command(_in(SINGLE, statement))
    key_types = {}
    for statement in statements:
        store.command(_in(REPLAY, _without_cluster(statement)))
        if match := DISTRIBUTED.match(statement):
            key_types[match.group(1)] = store.rows(
                f"SELECT toTypeName(any({match.group(4)})) FROM {REPLAY}.{match.group(3)}"
            )[0][0]
    yield key_types
    for database in (SINGLE, REPLAY):
        store.command(f"DROP DATABASE IF EXISTS {database} SYNC")


def test_every_statement_parses(store, statements):
    for statement in statements:
        ((formatted,),) = store.rows("SELECT formatQuery({q:String})", {"q": statement})
        if not statement.startswith("INSERT"):
            assert f"ON CLUSTER {CLUSTER}" in formatted, statement


def test_the_tables_and_views_are_those_of_the_single_node_schema(store, statements, replayed):
    single = _tables(store, SINGLE)
    local = {m.group(1) for s in statements if (m := LOCAL_TABLE.match(s))}
    distributed = {m.group(1) for s in statements if (m := DISTRIBUTED.match(s))}
    assert len([s for s in statements if LOCAL_TABLE.match(s)]) == len(single) >= 15
    assert local == distributed == set(single)
    assert _tables(store, SINGLE, views=True) == _tables(store, REPLAY, views=True) == ["events_hourly_mv"]


def test_local_and_distributed_tables_have_the_single_node_columns(store, replayed):
    for table in _tables(store, SINGLE):
        columns = _columns(store, SINGLE, table)
        assert columns == _columns(store, REPLAY, f"{table}_local") == _columns(store, REPLAY, table), table
    assert ("visitor_id", "UInt64") in _columns(store, REPLAY, "events")  # added by 0006, after the CREATE


def test_distributed_tables_point_at_their_local_table(statements, replayed):
    made = set()
    for statement in statements:
        if match := LOCAL_TABLE.match(statement):
            made.add(f"{match.group(1)}_local")
        if match := DISTRIBUTED.match(statement):
            name, source, target, _ = match.groups()
            assert source == target == f"{name}_local" and target in made, statement
    assert set(replayed.values()) == {"UInt64"}  # every sharding key reads its table's columns


def test_visitor_tables_shard_by_the_query_layers_visitor_key(statements):
    from queries.sessions import VISITOR_KEY

    keys = {m.group(1): m.group(4) for s in statements if (m := DISTRIBUTED.match(s))}
    assert cluster.VISITOR_KEY == VISITOR_KEY
    assert keys["events"] == f"cityHash64(site, {VISITOR_KEY})"
    assert keys["visits"] == "cityHash64(site, visitor)"
    assert "rand()" not in " ".join(keys.values())
    assert keys["api_tokens"] == "cityHash64(token_id)"  # a token's revocation row on the token's shard


def test_local_tables_are_replicated(statements):
    for statement in statements:
        if LOCAL_TABLE.match(statement):
            assert re.search(rf"\nENGINE = Replicated\w*MergeTree\({re.escape(REPLICATION)}(, \w+)?\)\n", statement), (
                statement
            )
            assert "non_replicated_deduplication_window" not in statement
    assert "ReplicatedReplacingMergeTree(" + REPLICATION + ", revoked)" in _local_ddl(statements, "api_tokens")
    assert "SETTINGS replicated_deduplication_window = 1000" in _local_ddl(statements, "visits")


def test_visitor_level_tables_keep_the_two_year_limit(statements):
    for table, column in TTL_TABLES.items():
        ttl = re.search(rf"\nTTL toDateTime\({column}\) \+ INTERVAL (\d+) DAY DELETE", _local_ddl(statements, table))
        assert ttl and int(ttl.group(1)) <= MAX_RETENTION_DAYS, table


def test_views_read_and_write_local_tables(statements):
    views = [m for s in statements if (m := VIEW.match(s))]
    assert [m.group(1) for m in views] == ["events_hourly_mv"]
    for view in views:
        assert view.group(2) == "events_hourly_local"
        sources = re.findall(r"\bbeacon\.(\w+)", view.group(3))
        assert sources == ["events_local"]


def test_alters_go_to_the_local_tables_and_settings_are_translated(statements):
    alters = [s for s in statements if s.startswith("ALTER")]
    local = [s for s in alters if "_local ON CLUSTER 'beacon_cluster' " in s]
    assert all(s.startswith("ALTER TABLE beacon.") for s in alters)
    # A column added once the Distributed table exists (0014, 0015): it follows, after its local table.
    for s in set(alters) - set(local):
        table, change = re.match(r"ALTER TABLE beacon\.(\w+) ON CLUSTER 'beacon_cluster' (ADD COLUMN .*)", s).groups()
        assert any(
            t.startswith(f"ALTER TABLE beacon.{table}_local ") and change in t for t in alters[: alters.index(s)]
        )
    assert (
        "ALTER TABLE beacon.events_local ON CLUSTER 'beacon_cluster' "
        "MODIFY SETTING replicated_deduplication_window = 10000"
    ) in alters
    assert (
        "ALTER TABLE beacon.events_hourly_local ON CLUSTER 'beacon_cluster' "
        "MODIFY SETTING replicated_deduplication_window = 10000"
    ) in alters
    # 0009's backfill and 0025's record of the visits built without sequences, in the foreground
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 2
    assert inserts[0].startswith("INSERT INTO beacon.events_hourly SETTINGS insert_distributed_sync = 1\nSELECT")
    assert inserts[1] == (
        "INSERT INTO beacon.visit_sequences (missing_before) SETTINGS insert_distributed_sync = 1\n"
        "SELECT max(until) FROM beacon.visit_builds"
    )


def test_retention_goes_to_the_local_tables(store, replayed):
    for statement in cluster.retention_statements(CLUSTER, 400, 30):
        store.command(_in(REPLAY, _without_cluster(statement)))
    ((events,),) = store.rows(
        f"SELECT create_table_query FROM system.tables WHERE database = '{REPLAY}' AND name = 'events_local'"
    )
    ((visits,),) = store.rows(
        f"SELECT create_table_query FROM system.tables WHERE database = '{REPLAY}' AND name = 'visits_local'"
    )
    assert "toIntervalDay(30)" in events and "toIntervalDay(400)" in visits
    with pytest.raises(ValueError):
        cluster.retention_statements(CLUSTER, MAX_RETENTION_DAYS + 1)


def test_a_new_migration_file_is_picked_up(tmp_path):
    folder = _copy_of_the_migrations(tmp_path)
    (folder / "0200_extra.sql").write_text(
        "-- a new table, then a column for it\n"
        "CREATE TABLE IF NOT EXISTS beacon.extra\n(\n    site String,\n    n UInt64\n)\n"
        "ENGINE = SummingMergeTree\nORDER BY site;\n"
        "ALTER TABLE beacon.extra ADD COLUMN IF NOT EXISTS m UInt64 DEFAULT 0 AFTER n;\n"
    )
    statements = cluster.cluster_statements(CLUSTER, folder)
    assert statements[:-4] == cluster.cluster_statements(CLUSTER)
    local, distributed, alter_local, alter_distributed = statements[-4:]
    assert local.startswith("CREATE TABLE IF NOT EXISTS beacon.extra_local ON CLUSTER 'beacon_cluster'")
    assert f"ENGINE = ReplicatedSummingMergeTree({REPLICATION})" in local
    assert distributed.endswith("Distributed('beacon_cluster', 'beacon', 'extra_local', cityHash64(site))")
    assert alter_local == (
        "ALTER TABLE beacon.extra_local ON CLUSTER 'beacon_cluster' ADD COLUMN IF NOT EXISTS m UInt64 DEFAULT 0 AFTER n"
    )
    assert alter_distributed == alter_local.replace("extra_local", "extra")


def test_a_statement_without_a_cluster_form_is_refused(tmp_path):
    folder = _copy_of_the_migrations(tmp_path)
    (folder / "0200_view.sql").write_text("CREATE VIEW IF NOT EXISTS beacon.recent AS SELECT * FROM beacon.events;\n")
    with pytest.raises(ValueError, match="0200_view"):
        cluster.cluster_statements(CLUSTER, folder)
    with pytest.raises(ValueError, match="cluster name"):
        cluster.cluster_statements("x' ; DROP")


def test_migrate_cluster_applies_each_migration_once_and_records_it():
    store = _RecordingStore()
    applied = cluster.migrate_cluster(store, CLUSTER)
    assert [m.version for m in applied] == [m.version for m in available()]
    assert [
        c for c in store.commands if not c.startswith("INSERT INTO beacon.schema_migrations ")
    ] == cluster.cluster_statements(CLUSTER)
    assert store.recorded == [m.version for m in available()]
    assert all(
        "insert_distributed_sync = 1" in c
        for c in store.commands
        if c.startswith("INSERT INTO beacon.schema_migrations ")
    )
    store.commands.clear()
    assert cluster.migrate_cluster(store, CLUSTER) == []
    assert len(store.commands) == 3  # the database and the bookkeeping tables, which are kept


# Not BEACON_TEST_CLICKHOUSE (tests/conftest.py): that server gets the single-node schema.
@pytest.mark.skipif(
    not (os.environ.get("BEACON_TEST_CLUSTER_DSN") and os.environ.get("BEACON_TEST_CLUSTER")),
    reason="needs a throwaway ClickHouse cluster: BEACON_TEST_CLUSTER_DSN (one node's DSN) and "
    "BEACON_TEST_CLUSTER (its cluster name, with {shard}/{replica} macros and Keeper)",
)
def test_applies_on_a_real_cluster():
    server = ClickHouseStore(os.environ["BEACON_TEST_CLUSTER_DSN"])
    name = os.environ["BEACON_TEST_CLUSTER"]
    try:
        cluster.migrate_cluster(server, name)
        assert cluster.migrate_cluster(server, name) == []
        engines = dict(server.rows("SELECT name, engine FROM system.tables WHERE database = 'beacon'"))
        assert engines["events"] == "Distributed" and engines["events_local"] == "ReplicatedMergeTree"
    finally:
        server.close()


def test_a_dsn_names_its_cluster_and_mutations_go_to_the_local_tables_on_it():
    from storage.clickhouse import mutation_target, split_cluster

    assert split_cluster("http://u:p@ch:8123/default?cluster=beacon_cluster&secure=0") == (
        "http://u:p@ch:8123/default?secure=0",
        "beacon_cluster",
    )
    assert split_cluster("http://u:p@ch:8123/") == ("http://u:p@ch:8123/", "")
    assert mutation_target("events", "beacon_cluster") == "beacon.events_local ON CLUSTER 'beacon_cluster'"
    assert mutation_target("events", "") == "beacon.events"


def test_an_erasure_on_a_cluster_deletes_from_every_local_table_not_the_distributed_ones():
    """Distributed tables take no mutation: ``erase`` must name the ``_local`` tables
    ON CLUSTER, for every table holding the subject's rows."""
    from storage.clickhouse import mutation_target
    from storage.privacy import SUBJECT_TABLES, erase

    class ClusterStore(_RecordingStore):
        def mutable(self, table):
            return mutation_target(table, "beacon_cluster")

        def rows(self, sql, parameters=None):
            return [(0,)]

    store = ClusterStore()
    erase(store, "subject-pseudonym", "dpo")
    deletes = [sql for sql in store.commands if " DELETE WHERE " in sql]
    assert len(deletes) == len(SUBJECT_TABLES)
    for table, sql in zip(SUBJECT_TABLES, deletes):
        assert sql.startswith(f"ALTER TABLE beacon.{table}_local ON CLUSTER 'beacon_cluster' DELETE WHERE "), sql


# --- helpers -------------------------------------------------------------------------


class _RecordingStore:
    """Takes commands; answers the bookkeeping read from the versions recorded."""

    def __init__(self):
        self.commands: list[str] = []
        self.recorded: list[int] = []

    def command(self, sql, parameters=None):
        self.commands.append(sql)
        if sql.startswith("INSERT INTO beacon.schema_migrations "):
            self.recorded.append(parameters["v"])

    def rows(self, sql, parameters=None):
        assert sql == "SELECT version FROM beacon.schema_migrations"
        return [(v,) for v in self.recorded]


def _in(database: str, statement: str) -> str:
    return re.sub(r"\bbeacon\.", f"{database}.", statement)


def _without_cluster(statement: str) -> str:
    """The statement as one embedded engine can run it."""
    statement = statement.replace(f" ON CLUSTER '{CLUSTER}'", "")
    statement = re.sub(rf"Replicated(\w*MergeTree)\({re.escape(REPLICATION)}(, )?", r"\1(", statement)
    return re.sub(r"ENGINE = Distributed\(.*\)$", "ENGINE = Null", statement, flags=re.S)


def _tables(store: ClickHouseStore, database: str, views: bool = False) -> list[str]:
    op = "=" if views else "!="
    return [
        r[0]
        for r in store.rows(
            f"SELECT name FROM system.tables WHERE database = {{d:String}} AND engine {op} 'MaterializedView' "
            "ORDER BY name",
            {"d": database},
        )
    ]


def _columns(store: ClickHouseStore, database: str, table: str) -> list[tuple[str, str]]:
    return [
        tuple(r)
        for r in store.rows(
            "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} ORDER BY position",
            {"d": database, "t": table},
        )
    ]


def _local_ddl(statements: list[str], table: str) -> str:
    return next(s for s in statements if (m := LOCAL_TABLE.match(s)) and m.group(1) == table)


def _copy_of_the_migrations(tmp_path: Path) -> Path:
    source = Path(cluster.__file__).resolve().parent.parent / "schemas" / "clickhouse"
    return Path(shutil.copytree(source, tmp_path / "clickhouse"))


def test_beacon_migrate_cluster_dry_run_prints_the_derived_ddl():
    from tests.server import cli

    printed = cli("migrate", "--cluster", "beacon_cluster", "--dry-run").stdout
    expected = cluster.cluster_statements("beacon_cluster") + cluster.retention_statements("beacon_cluster", 730)
    assert printed == ";\n\n".join(expected) + ";\n"
    refused = cli("migrate", "--cluster", "beacon_cluster", "--data-dir", "/nonexistent", check=False)
    assert refused.returncode == 2 and "--clickhouse" in refused.stderr
