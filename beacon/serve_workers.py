"""``beacon serve --workers N``: the embedded mode on several cores.

One Python process handles about one core's worth of requests (the GIL), and chDB
lets only one process open the data directory. So:

    owner process (this one)                     N worker processes (spawned)
    ─────────────────────────                    ───────────────────────────────────────────
    chDB store, migrations, control.sock         HTTP on its own SO_REUSEPORT socket:
    rows.sock ◀── clean JSONEachRow rows ─────── validate → privacy filter → encode rows
    RowBuffer → one INSERT every 0.5 s           sites read through control.sock

Each worker binds the port with SO_REUSEPORT, so the kernel spreads connections
evenly (with one shared socket, the first process to wake accepts them all).
SIGTERM/SIGINT: the owner passes SIGTERM to the workers, which finish their
requests and ship every accepted row; then it drains the buffer into the store.
A worker that dies is replaced, unless it dies at start (a port in use, say).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from typing import Callable

from beacon import http, wiring
from common import logs
from common.settings import Settings
from storage.control import ControlServer
from storage.control import socket_path as control_socket
from storage.intake_log import intake_dir
from storage.intake_replay import IntakeRetirer
from storage.row_buffer import RowBuffer
from storage.row_channel import RowReceiver
from storage.row_channel import socket_path as rows_socket
from storage.sink import EventSink
from web.server import listen

log = logging.getLogger("beacon.serve")


def run_owner(settings: Settings) -> None:
    store = wiring.open_store(settings)
    sink = EventSink(store)
    buffer = RowBuffer(sink, settings.queue_capacity, settings.batch_max_rows, settings.flush_interval)
    control = ControlServer(store, control_socket(settings.data_dir))
    receiver = RowReceiver(buffer, rows_socket(settings.data_dir))
    retirer = IntakeRetirer(intake_dir(settings.data_dir), sink,
                            settle=lambda: _settle(receiver, buffer, retirer.live_writers))
    retirer.run_once()  # a crashed run's accepted beacons, stored before new ones
    retirer.start()
    visits = wiring.visit_builder(store, settings)
    visits.start()
    try:
        asyncio.run(_supervise(settings, buffer, control, receiver))
    finally:
        retirer.stop()  # the workers have ended and their rows are stored: their logs go
        visits.stop()
        store.close()
        log.info("stopped")


def _settle(receiver: RowReceiver, buffer: RowBuffer, live_writers: Callable[[], int], timeout: float = 60.0) -> bool:
    """Before a dead worker's intake log is replayed: its last frames are taken (its
    connection reached its end: a live worker takes its log's lock before it
    connects, so one connection more than live writers is a dead one's), then stored."""
    deadline = time.monotonic() + timeout
    while receiver.open_connections > live_writers():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return buffer.wait_stored()


class WorkerFailed(RuntimeError):
    pass


async def _supervise(settings: Settings, buffer: RowBuffer, control: ControlServer, receiver: RowReceiver) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    buffer.start()
    await control.start()
    await receiver.start()
    spawn = multiprocessing.get_context("spawn")
    workers = [_start_worker(spawn, settings) for _ in range(settings.workers)]
    started = [loop.time()] * len(workers)
    log.info("serving", extra={"host": settings.host, "port": settings.port, "workers": settings.workers})

    failed = None
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), timeout=1.0)
        except asyncio.TimeoutError:
            pass
        for i, worker in enumerate(workers):
            if worker.is_alive() or stopping.is_set():
                continue
            _forget_metrics(worker.pid)
            if loop.time() - started[i] < 10:
                failed = WorkerFailed(f"an HTTP worker exited at start (code {worker.exitcode}); see its log")
                stopping.set()
                break
            log.error("worker process died; starting another", extra={"exitcode": worker.exitcode})
            workers[i], started[i] = _start_worker(spawn, settings), loop.time()

    for worker in workers:
        worker.terminate()  # SIGTERM: a graceful stop that ships every accepted row
    await loop.run_in_executor(None, lambda: [w.join(60) for w in workers])
    await receiver.wait_closed_connections()
    await receiver.stop()
    await loop.run_in_executor(None, buffer.stop)
    await control.stop()
    for worker in workers:
        _forget_metrics(worker.pid)
    if failed:
        raise failed


def _start_worker(spawn, settings: Settings):
    process = spawn.Process(target=worker_main, args=(settings, os.getpid()), name="beacon-http", daemon=False)
    process.start()
    return process


def _forget_metrics(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)


# --- a worker process ---------------------------------------------------------------------


def worker_main(settings: Settings, owner_pid: int) -> None:
    logs.setup(settings.log_level)
    _stop_with_owner(owner_pid)
    listener = listen(settings.host, settings.port, reuse_port=True)
    # Rows that cannot reach the owner: stop (gracefully), and the owner starts another.
    app = wiring.http_worker_app(settings, on_failure=lambda: os.kill(os.getpid(), signal.SIGTERM))
    http.serve(app, settings, listener)


_PR_SET_PDEATHSIG = 1


def _stop_with_owner(owner_pid: int) -> None:
    """Without its owner a worker can store nothing, yet it would go on answering 202:
    have the kernel send it SIGTERM (a graceful stop) when the owner dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("this system cannot stop HTTP workers with their owner")
        return
    if os.getppid() != owner_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
