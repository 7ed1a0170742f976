"""One way into ClickHouse for every caller: ``open_store(dsn)``.

A DSN is ``chdb:///abs/path`` (the embedded engine, in this process) or
``http(s)://user:pass@host:8123/db`` (a ClickHouse server). Both go through
clickhouse-connect, so the SQL and DDL are the same.

chDB allows one engine per process and one process per data directory. A client
(one chDB connection handle, or one HTTP session) is not safe to share between
threads, but several clients on the one engine are: the store keeps three, each
behind its own lock, so that reads (dashboards, exports) and other writes (DDL,
erasures, the visit builder's INSERT … SELECT) never wait behind, or hold up, the
sink's inserts. Measured (chDB 4.4, 2 cores): 5,000-row inserts took 4.7 ms alone;
beside 570 ms queries, 8.7 ms (p50) and 24 ms at most on their own client, against
up to 457 ms when the same query held the one shared lock. 30 s of inserts, a query
loop and DELETEs (lightweight and ALTER … mutations_sync = 2) on the three
clients at once: no error, and every row count exact. A fourth client, read-only
for good, runs `beacon query` (``read_only_query``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError

from storage.read_only_sql import WRITE_REFUSAL, ReadOnlyRefusal, check_read_only, parse_ast_dump

DATABASE = "beacon"


def dsn_for_data_dir(data_dir: Path) -> str:
    return f"chdb://{(Path(data_dir) / 'clickhouse').resolve()}"


def is_embedded(dsn: str) -> bool:
    return urlsplit(dsn).scheme == "chdb"


class Store(Protocol):
    """What the rest of the code may ask of ClickHouse (local engine, server, or the
    process that owns an embedded data directory)."""

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]: ...

    def raw_query(self, sql: str, fmt: str, parameters: dict[str, Any] | None = None) -> bytes: ...

    def read_only_query(self, sql: str, fmt: str) -> bytes:
        """Run SQL that may only read (ClickHouse's ``readonly = 1``): ``beacon query``."""

    def mutable(self, table: str) -> str:
        """The name a DELETE or ``ALTER … DELETE`` of ``table`` must use (``mutation_target``)."""

    def writes(self) -> int | None:
        """How many calls that may write (``command``, ``raw_query``) went through
        this store, when it sees every write: the embedded engine, which one process
        owns. None when others may write too (a ClickHouse server). ``rows`` is
        for reads only."""

    def close(self) -> None: ...


def split_cluster(dsn: str) -> tuple[str, str]:
    """The DSN without its ``cluster`` query parameter, and that cluster's name ("" for
    one server). A ClickHouse cluster is named in the DSN that reaches it
    (``http://user:pw@host:8123/?cluster=beacon_cluster``), so every command that takes
    ``--clickhouse`` knows it with no option of its own."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    cluster = next((value for key, value in query if key == "cluster"), "")
    rest = urlencode([(key, value) for key, value in query if key != "cluster"])
    return parts._replace(query=rest).geturl(), cluster


def mutation_target(table: str, cluster: str) -> str:
    """Where ``ALTER … DELETE`` and ``DELETE FROM`` of ``table`` go: the table itself on
    one server; on a cluster the Replicated ``_local`` tables of every node, since a
    Distributed table takes no mutation (storage/cluster.py)."""
    if cluster:
        return f"{DATABASE}.{table}_local ON CLUSTER '{cluster}'"
    return f"{DATABASE}.{table}"


# On a cluster: an INSERT into a Distributed table reaches its shards before it returns,
# carrying its deduplication token (a background one is queued and batched), and
# ``IN (SELECT … beacon.events)`` reads each shard's own rows, where a visitor's events
# all are (the sharding key), instead of being refused.
_CLUSTER_SETTINGS = {"insert_distributed_sync": 1, "distributed_product_mode": "local"}


class ClickHouseStore:
    def __init__(self, dsn: str):
        dsn, self.cluster = split_cluster(dsn)
        self.dsn = dsn
        if is_embedded(dsn):
            Path(urlsplit(dsn).path).mkdir(parents=True, exist_ok=True)
        # The embedded engine shares this machine's cores with the collector: its
        # queries and background writes run at the lowest OS priority, so that the
        # inserts keep their pace (beside a query loop: inserts p50 4.9 ms and p99
        # 56 ms, against 15.7 and 237 ms at equal priority; 4.7 and 22 ms alone).
        self._yielding = {"os_thread_priority": 19} if is_embedded(dsn) else {}
        cluster = _CLUSTER_SETTINGS if self.cluster else {}
        self._inserts = _Client(dsn, cluster)
        self._commands = _Client(dsn, {**self._yielding, **cluster})
        self._reads = _Client(dsn, {**self._yielding, **cluster, **_PLAIN_JSON})
        self._read_only: _Client | None = None  # `beacon query`, made on first use
        self._making_read_only = threading.Lock()
        self._known_table_functions: frozenset[str] | None = None
        self._writes = 0
        self._counting = threading.Lock()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        try:
            with self._commands.lock:
                return self._commands.client.command(sql, parameters=parameters)
        finally:  # also when it failed: part of it may have been written
            self._count_write()

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._reads.lock:
            return list(self._reads.client.query(sql, parameters=parameters).result_rows)

    def raw_query(self, sql: str, fmt: str, parameters: dict[str, Any] | None = None) -> bytes:
        # Exports and `beacon query`: long reads, on the reads' client.
        try:
            with self._reads.lock:
                return self._reads.client.raw_query(sql, parameters=parameters, fmt=fmt)
        finally:  # `beacon query` takes any SQL, writes included: counted as one
            self._count_write()

    def writes(self) -> int | None:
        return self._writes if is_embedded(self.dsn) else None

    def mutable(self, table: str) -> str:
        """``mutation_target`` of ``table`` for this store."""
        return mutation_target(table, self.cluster)

    def insert_json_rows(self, table: str, payload: bytes, token: str | None = None) -> None:
        """Insert newline-delimited JSON objects; the cheapest insert path from Python.
        ``token``: the INSERT's deduplication token (``deduplication_settings``)."""
        settings = deduplication_settings(token) if token else None
        with self._inserts.lock:
            self._inserts.client.raw_insert(table, None, payload, fmt="JSONEachRow", settings=settings)

    def insert_csv_rows(self, table: str, columns: list[str], payload: bytes) -> None:
        """Insert CSV rows (no header) into the named ``columns`` (others take their defaults)."""
        with self._inserts.lock:
            self._inserts.client.raw_insert(table, columns, payload, fmt="CSV")

    @contextmanager
    def paused_inserts(self) -> Iterator[Callable[[str], Any]]:
        """No INSERT runs on this store meanwhile (a backup freezes every table at one
        point); yields a way to run commands on the inserts' own client, at its OS
        priority: a command of the low-priority clients could be starved by a busy
        machine while it holds up every insert."""
        with self._inserts.lock:
            yield self._inserts.client.command

    def read_only_query(self, sql: str, fmt: str) -> bytes:
        """Run SQL that may only read (``beacon query``), on a client whose session
        is read-only (``_read_only_client``), once its parse has passed
        ``storage.read_only_sql`` (which ``readonly = 1`` alone does not cover)."""
        client = self._read_only_client()
        with client.lock:
            dump = _ast_dump(client, sql)
            check_read_only(parse_ast_dump(dump.rstrip("\n").split("\n")), self._table_functions(client))
            return client.client.raw_query(sql, fmt=fmt)

    def close(self) -> None:
        for client in (self._inserts, self._commands, self._reads, self._read_only):
            if client is not None:
                with client.lock:
                    client.client.close()

    def _read_only_client(self) -> _Client:
        """A client whose every query runs with ClickHouse's ``readonly = 1``, made on
        first use. Per query, the setting does not do: chDB's client applies a
        query's settings with SET and restores them afterwards, and ``readonly``
        cannot be restored (a read-only session may not change it), so the client it
        ran on would stay read-only. Here the session is read-only for good, which
        is what is wanted: nothing sent on it can unset it (``SETTINGS readonly = 0``
        is refused). Over HTTP the setting goes with every request. ``readonly = 1``,
        not 2: with 2, chDB still wrote a file for ``INSERT INTO FUNCTION file(…)``;
        with 1 that is refused too, and so is any SETTINGS clause in the query."""
        with self._making_read_only:
            if self._read_only is None:
                # Set before readonly: a read-only session may change no setting after it.
                self._read_only = _Client(self.dsn, {**self._yielding, **_PLAIN_JSON, "readonly": 1})
            return self._read_only

    def _table_functions(self, client: _Client) -> frozenset[str]:
        """Every table function the engine knows (lower-case), asked once."""
        if self._known_table_functions is None:
            names = client.client.query("SELECT name FROM system.table_functions").result_rows
            self._known_table_functions = frozenset(name.lower() for (name,) in names)
        return self._known_table_functions

    def _count_write(self) -> None:
        with self._counting:
            self._writes += 1


# JSON as people and other tools write it: "/" stays "/" (ClickHouse writes "\/" by
# default, a habit of HTML embedding), in `beacon query --format json` and exports.
_PLAIN_JSON = {"output_format_json_escape_forward_slashes": 0}


def deduplication_settings(token: str) -> dict[str, Any]:
    """Settings of an INSERT that ClickHouse stores at most once per ``token``: a
    MergeTree table with ``non_replicated_deduplication_window`` (migration 0013)
    drops a block whose token it has stored among its last N blocks, and, with
    ``deduplicate_blocks_in_dependent_materialized_views``, the tables fed by its
    materialized views drop the blocks derived from it (on by default in chDB 4.4,
    off by default in older servers: so it is set). The same settings on a server (HTTP,
    sent with the request) and in chDB (a SETTINGS clause of the INSERT)."""
    return {
        "insert_deduplicate": 1,
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }


class _Client:
    """One client with the lock its calls go through."""

    def __init__(self, dsn: str, settings: dict[str, Any] | None = None):
        # The database may not exist yet (migrations create it), so connect without one.
        self.client = clickhouse_connect.get_client(dsn=_without_database(dsn), settings=settings)
        self.lock = threading.Lock()


def _without_database(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return dsn
    return parts._replace(path="").geturl()


def _ast_dump(client: _Client, sql: str) -> str:
    """``EXPLAIN AST`` of ``sql``, raw. A statement that takes no FORMAT clause after it
    (``SYSTEM FLUSH LOGS`` reads one as the name of a log) makes that a syntax error:
    such a statement is not one that reads, and is refused as such, naming its kind;
    one that does not parse at all gets its own syntax error."""
    try:
        return client.client.raw_query(f"EXPLAIN AST {sql}", fmt="TabSeparatedRaw").decode()
    except DatabaseError as exc:
        if "SYNTAX_ERROR" not in str(exc):
            raise
        kind = client.client.raw_query(f"EXPLAIN AST {sql}").decode().split(" ", 1)[0].strip()
        raise ReadOnlyRefusal(f"{WRITE_REFUSAL} ({kind})") from exc
