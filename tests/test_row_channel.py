"""The rows channel of `beacon serve --workers`: HTTP processes → the store's owner."""

from __future__ import annotations

import socket
import struct
import threading
import time

from storage.row_channel import RowShipper

FRAME = struct.Struct(">IId")


def _listen(path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


def _read_frame(conn: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = conn.recv(n - len(data))
            assert part, "the shipper closed its end mid-frame"
            data += part
        return data

    size, rows, _arrival = FRAME.unpack(exactly(FRAME.size))
    return rows, exactly(size)


def test_rows_are_shipped_in_frames_and_all_of_them_on_close(tmp_path):
    server = _listen(tmp_path / "rows.sock")
    shipper = RowShipper(tmp_path / "rows.sock", capacity=100)
    shipper.start()
    conn, _ = server.accept()
    shipper.add(b'{"n":1}\n{"n":2}', 2, time.time())
    assert _read_frame(conn) == (2, b'{"n":1}\n{"n":2}')
    shipper.add(b'{"n":3}', 1, time.time())
    shipper.close()
    assert _read_frame(conn) == (1, b'{"n":3}')
    assert conn.recv(1) == b""  # then the end of the stream
    conn.close()
    server.close()


def test_an_owner_that_takes_no_more_rows_stops_the_process_from_accepting(tmp_path):
    """Before: the shipping thread died with a traceback, yet has_room() stayed true,
    so the HTTP process went on answering 202 for rows nobody would store."""
    server = _listen(tmp_path / "rows.sock")
    failures = []
    shipper = RowShipper(
        tmp_path / "rows.sock", capacity=100, on_failure=lambda: failures.append(threading.current_thread().name)
    )
    shipper.start()
    conn, _ = server.accept()
    conn.close()  # the owner's end goes away
    server.close()
    assert shipper.has_room(1) and shipper.ready()

    deadline = time.monotonic() + 10
    while not shipper.failed and time.monotonic() < deadline:
        shipper.add(b'{"n":1}', 1, time.time())
        time.sleep(0.05)
    assert shipper.failed
    assert not shipper.has_room(1)  # the collector answers 503
    assert not shipper.ready()  # and /readyz says so
    assert failures == ["row-shipper"]
    shipper.close()  # does not hang on the dead channel
