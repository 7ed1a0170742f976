"""Clean rows from HTTP worker processes to the process that owns the store
(``beacon serve --workers N``): one Unix socket, ``<data-dir>/rows.sock``.

A frame is ``[u32 payload bytes][u32 rows][f64 first arrival]`` + JSONEachRow rows.
The owner stops reading while its buffer is full, so the sender's socket fills and
its own bounded backlog grows until its collector answers 503: back-pressure all
the way to the client, and nothing accepted is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from pathlib import Path

from storage.control import start_private_unix_server, stop_unix_server
from storage.row_buffer import RowBuffer

log = logging.getLogger("beacon.rows")

SOCKET_NAME = "rows.sock"
_FRAME = struct.Struct(">IId")


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


class RowReceiver:
    """The owner's side: frames into the ``RowBuffer``."""

    def __init__(self, buffer: RowBuffer, path: Path):
        self.buffer = buffer
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    async def wait_closed_connections(self, timeout: float = 30.0) -> None:
        """Wait until every sender has closed its end and its frames were taken."""
        if self._connections:
            await asyncio.wait(self._connections, timeout=timeout)

    @property
    def open_connections(self) -> int:
        """Senders whose frames are still being taken (a dead one's until its last)."""
        return len(self._connections)

    async def start(self) -> None:
        self._server = await start_private_unix_server(self._handle, self.path)

    async def stop(self) -> None:
        await stop_unix_server(self._server, self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            while True:
                header = await reader.readexactly(_FRAME.size)
                size, rows, arrival = _FRAME.unpack(header)
                payload = await reader.readexactly(size)
                while not self.buffer.has_room(rows):  # back-pressure: stop reading
                    await asyncio.sleep(0.01)
                self.buffer.add(payload, rows, arrival)
        except asyncio.IncompleteReadError:
            pass  # the worker closed its end
        finally:
            writer.close()
            self._connections.discard(task)


class RowShipper:
    """A worker process's side: rows collected from requests, shipped in frames by
    one thread; bounded, so a stuck owner turns into 503s, not memory growth."""

    def __init__(self, path: Path, capacity: int, interval: float = 0.02, on_failure=None):
        self.path = path
        self.capacity = capacity
        self.interval = interval
        self.on_failure = on_failure  # called (from the shipping thread) once the owner is unreachable
        self.failed = False
        self._chunks: list[bytes] = []
        self._rows = 0
        self._first_arrival = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="row-shipper", daemon=True)

    def has_room(self, rows: int) -> bool:
        return not self._closing and not self.failed and self._rows + rows <= self.capacity

    def add(self, chunk: bytes, rows: int, arrival: float) -> None:
        with self._lock:
            if not self._chunks:
                self._first_arrival = arrival
            self._chunks.append(chunk)
            self._rows += rows

    def ready(self) -> bool:
        return not self.failed and self._thread.is_alive()

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(self.path))
        self._thread.start()

    def close(self) -> None:
        """Ship everything taken, then close (the owner stores it)."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self._sock:
            self._sock.close()

    def _run(self) -> None:
        while True:
            if not self._closing:
                self._wake.wait(self.interval)
            with self._lock:
                chunks, rows, arrival = self._chunks, self._rows, self._first_arrival
                self._chunks, self._rows = [], 0
            if chunks:
                payload = b"\n".join(chunks)
                try:
                    # Blocks while the owner is not reading (its buffer is full).
                    self._sock.sendall(_FRAME.pack(len(payload), rows, arrival) + payload)
                except OSError as exc:
                    self._fail(exc, rows)
                    return
            elif self._closing:
                return

    def _fail(self, exc: OSError, rows: int) -> None:
        """The owner takes no more rows: accept no more beacons (503, not ready)
        rather than answer 202 for rows that cannot be stored."""
        self.failed = True
        with self._lock:
            rows += self._rows
            self._chunks, self._rows = [], 0
        log.error(
            "the store's owner takes no more rows; this process stops accepting beacons",
            extra={"error": type(exc).__name__, "rows_lost": rows},
        )
        if self.on_failure is not None:
            self.on_failure()
