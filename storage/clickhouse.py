"""One way into ClickHouse for every caller: ``open_store(dsn)``.

A DSN is ``chdb:///abs/path`` (the embedded engine, in this process) or
``http(s)://user:pass@host:8123/db`` (a ClickHouse server). Both go through
clickhouse-connect, so the SQL and DDL are the same.

chDB allows one engine per process and one process per data directory, and its
client is not safe to share between threads, so every call goes through one lock.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import clickhouse_connect

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

    def writes(self) -> int | None:
        """How many calls that may write (``command``, ``raw_query``) went through
        this store, when it sees every write: the embedded engine, which one process
        owns. None when others may write too (a ClickHouse server). ``rows`` is
        for reads only."""

    def close(self) -> None: ...


class ClickHouseStore:
    def __init__(self, dsn: str):
        self.dsn = dsn
        if is_embedded(dsn):
            Path(urlsplit(dsn).path).mkdir(parents=True, exist_ok=True)
        # The database may not exist yet (migrations create it), so connect without one.
        self._client = clickhouse_connect.get_client(dsn=_without_database(dsn))
        self._lock = threading.Lock()
        self._commands = 0

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            try:
                return self._client.command(sql, parameters=parameters)
            finally:  # also when it failed: part of it may have been written
                self._commands += 1

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters).result_rows)

    def raw_query(self, sql: str, fmt: str, parameters: dict[str, Any] | None = None) -> bytes:
        with self._lock:
            try:
                return self._client.raw_query(sql, parameters=parameters, fmt=fmt)
            finally:  # `beacon query` takes any SQL, writes included: counted as one
                self._commands += 1

    def writes(self) -> int | None:
        return self._commands if is_embedded(self.dsn) else None

    def insert_json_rows(self, table: str, payload: bytes) -> None:
        """Insert newline-delimited JSON objects; the cheapest insert path from Python."""
        with self._lock:
            self._client.raw_insert(table, None, payload, fmt="JSONEachRow")

    def close(self) -> None:
        with self._lock:
            self._client.close()


def _without_database(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return dsn
    return parts._replace(path="").geturl()
