"""Reach an embedded store that another process owns.

chDB lets one process open a data directory. While ``beacon serve`` runs, it
listens on ``<data-dir>/control.sock`` (mode 0600: whoever may read the data
directory may use it) and executes store calls for the CLI (``beacon query``,
``beacon sites add``, …). One JSON line in, one JSON line out.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from storage.clickhouse import Store, mutation_target

SOCKET_NAME = "control.sock"
MAX_LINE = 16 * 1024 * 1024


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


class ControlServer:
    def __init__(
        self,
        store: Store,
        path: Path,
        after_command: Callable[[], None] | None = None,
        operations: dict[str, Callable[[dict], Any]] | None = None,
    ):
        self.store = store
        self.path = path
        # Calls beyond the store's, answered by the server's own parts (e.g. a backup,
        # which must flush the pipeline and pause its inserts): name → handler(args).
        self.operations = operations or {}
        # Called after each command (a write, e.g. `beacon sites add`), before the
        # reply, so that the CLI returns once the server sees the change.
        self.after_command = after_command
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await start_private_unix_server(self._handle, self.path, limit=MAX_LINE)

    async def stop(self) -> None:
        await stop_unix_server(self._server, self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                request = orjson.loads(line)
                try:
                    result = await asyncio.get_running_loop().run_in_executor(None, self._call, request)
                    reply = {"ok": True, "result": result}
                except Exception as exc:  # the caller shows it; the server carries on
                    reply = {"ok": False, "error": str(exc)}
                writer.write(orjson.dumps(reply, default=str) + b"\n")
                await writer.drain()
        finally:
            writer.close()

    def _call(self, request: dict) -> Any:
        op, args = request["op"], request.get("args", {})
        if op == "command":
            result = self.store.command(args["sql"], args.get("parameters"))
            if self.after_command:
                self.after_command()
            return result if isinstance(result, (str, int, float, type(None))) else str(result)
        if op == "rows":
            return self.store.rows(args["sql"], args.get("parameters"))
        if op == "raw_query":  # `beacon query`: any SQL, so perhaps a write
            try:
                return base64.b64encode(self.store.raw_query(args["sql"], args["fmt"], args.get("parameters"))).decode()
            finally:
                if self.after_command:
                    self.after_command()
        if op == "read_only_query":  # `beacon query` without --write: cannot write
            return base64.b64encode(self.store.read_only_query(args["sql"], args["fmt"])).decode()
        if op == "insert_csv_rows":  # beacon import plausible while the server runs
            try:
                return self.store.insert_csv_rows(args["table"], args["columns"], base64.b64decode(args["payload"]))
            finally:
                if self.after_command:
                    self.after_command()
        if op == "writes":
            return self.store.writes()
        if op in self.operations:
            return self.operations[op](args)
        raise ValueError(f"unknown operation {op!r}")


async def start_private_unix_server(handler, path: Path, **kwargs) -> asyncio.AbstractServer:
    """A Unix socket only this user can use (mode 0600). A socket file left by a
    process that died is replaced: whoever calls this owns the data directory."""
    path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(handler, path=str(path), **kwargs)
    finally:
        os.umask(old_umask)


async def stop_unix_server(server: asyncio.AbstractServer | None, path: Path) -> None:
    if server:
        server.close()
        await server.wait_closed()
    path.unlink(missing_ok=True)


class RemoteStore:
    """The ``Store`` interface, executed by the process that owns the data directory."""

    def __init__(self, path: Path):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rb")
        self._lock = threading.Lock()  # one request/reply at a time on the connection

    def _call(self, op: str, **args: Any) -> Any:
        with self._lock:
            self._sock.sendall(orjson.dumps({"op": op, "args": args}, default=str) + b"\n")
            reply = orjson.loads(self._file.readline())
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def request(self, op: str, **args: Any) -> Any:
        """One of the server's own operations (``ControlServer.operations``)."""
        return self._call(op, **args)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._call("command", sql=sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        return [tuple(r) for r in self._call("rows", sql=sql, parameters=parameters)]

    def raw_query(self, sql: str, fmt: str, parameters: dict[str, Any] | None = None) -> bytes:
        return base64.b64decode(self._call("raw_query", sql=sql, fmt=fmt, parameters=parameters))

    def read_only_query(self, sql: str, fmt: str) -> bytes:
        return base64.b64decode(self._call("read_only_query", sql=sql, fmt=fmt))

    def insert_csv_rows(self, table: str, columns: list[str], payload: bytes) -> None:
        self._call("insert_csv_rows", table=table, columns=columns, payload=base64.b64encode(payload).decode())

    def mutable(self, table: str) -> str:
        return mutation_target(table, "")  # the owner's store is embedded: one node

    def writes(self) -> int | None:
        return self._call("writes")

    def close(self) -> None:
        self._file.close()
        self._sock.close()


def connect_if_served(data_dir: Path) -> RemoteStore | None:
    path = socket_path(data_dir)
    if not path.exists():
        return None
    try:
        return RemoteStore(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return None
