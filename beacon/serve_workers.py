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
from collections.abc import Callable

from beacon import http, wiring
from beacon.backup_service import BackupService
from beacon.services import Service, Services, in_thread
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

    def store_received() -> None:
        """A backup's cut: every row received so far stored (rows still in the HTTP
        processes, under their ship interval, may fall after it)."""
        if not buffer.flush():
            raise RuntimeError("the received rows could not be stored in time; no backup cut")

    backups = BackupService(store, settings, flush=store_received)
    control = ControlServer(
        store,
        control_socket(settings.data_dir),
        after_command=backups.journal_now,
        operations=backups.operations() | wiring.served_at(settings),
    )
    receiver = RowReceiver(buffer, rows_socket(settings.data_dir))
    retirer = IntakeRetirer(
        intake_dir(settings.data_dir), sink, settle=lambda: _settle(receiver, buffer, retirer.live_writers)
    )
    visits = wiring.visit_builder(store, settings)
    mails = wiring.mail_scheduler(store, settings)
    workers = HTTPWorkers(settings)

    def replay_then_retire() -> None:
        retirer.run_once()  # a crashed run's accepted beacons, stored before new ones
        retirer.start()

    services = Services(
        [  # started in this order, stopped in reverse
            Service("store", stop=store.close),
            Service("intake_retirer", replay_then_retire, retirer.stop),  # last: the workers' logs go once stored
            Service("visit_builder", visits.start, visits.stop),
            Service("mail_scheduler", mails.start, mails.stop),
            Service("backups", backups.start, backups.stop),  # a backup under way is abandoned cleanly
            Service("control", control.start, control.stop),
            Service("row_buffer", buffer.start, in_thread(buffer.stop)),  # stops once every row it took is stored
            Service("row_receiver", receiver.start, receiver.stop),
            Service("rows_in_flight", stop=receiver.wait_closed_connections),  # the drain: the workers' last rows
            Service("http_workers", workers.start, workers.stop),  # SIGTERM: each ships every row it accepted
        ]
    )
    try:
        asyncio.run(_serve(settings, services, workers))
    finally:
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
    return buffer.flush()


class WorkerFailed(RuntimeError):
    pass


async def _serve(settings: Settings, services: Services, workers: HTTPWorkers) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await services.start()
    log.info("serving", extra={"host": settings.host, "port": settings.port, "workers": settings.workers})
    try:
        failed = await workers.supervise(stopping)
    finally:
        await services.stop()
    if failed:
        raise failed


class HTTPWorkers:
    """The N HTTP processes: started, replaced when one dies, stopped gracefully."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._spawn = multiprocessing.get_context("spawn")
        self._processes: list = []
        self._serving: list = []  # a multiprocessing.Event per worker, set once it serves

    def start(self) -> None:
        self._processes, self._serving = [], []
        for _ in range(self.settings.workers):
            process, serving = _start_worker(self._spawn, self.settings)
            self._processes.append(process)
            self._serving.append(serving)

    async def supervise(self, stopping: asyncio.Event) -> WorkerFailed | None:
        """Replace a worker that dies, until ``stopping``; a worker that exits before it
        serves (a port in use, say) ends the supervision with its failure."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=1.0)
            except TimeoutError:
                pass
            for i, worker in enumerate(self._processes):
                if worker.is_alive() or stopping.is_set():
                    continue
                _forget_metrics(worker.pid)
                if not self._serving[i].is_set():
                    return WorkerFailed(f"an HTTP worker exited at start (code {worker.exitcode}); see its log")
                log.error("worker process died; starting another", extra={"exitcode": worker.exitcode})
                self._processes[i], self._serving[i] = _start_worker(self._spawn, self.settings)
        return None

    async def stop(self) -> None:
        for worker in self._processes:
            worker.terminate()  # SIGTERM: a graceful stop that ships every accepted row
        processes = self._processes
        await asyncio.get_running_loop().run_in_executor(None, lambda: [w.join(60) for w in processes])
        for worker in processes:
            _forget_metrics(worker.pid)


def _start_worker(spawn, settings: Settings) -> tuple:
    """The worker's process, and the event it sets once it serves."""
    serving = spawn.Event()
    process = spawn.Process(target=worker_main, args=(settings, os.getpid(), serving), name="beacon-http", daemon=False)
    process.start()
    return process, serving


def _forget_metrics(pid: int | None) -> None:
    from prometheus_client import multiprocess

    if pid is not None:
        multiprocess.mark_process_dead(pid)


# --- a worker process ---------------------------------------------------------------------


def worker_main(settings: Settings, owner_pid: int, serving) -> None:
    """``serving``: the multiprocessing.Event set once this worker serves; the owner
    takes a worker that dies before as one that cannot start."""
    logs.setup(settings.log_level)
    _stop_with_owner(owner_pid)
    listener = listen(settings.host, settings.port, reuse_port=True)
    # Rows that cannot reach the owner: stop (gracefully), and the owner starts another.
    app = wiring.http_worker_app(settings, on_failure=lambda: os.kill(os.getpid(), signal.SIGTERM))

    def now_serving() -> None:
        serving.set()
        log.info("HTTP worker serving", extra={"worker_pid": os.getpid()})

    http.serve(app, settings, listener, on_serving=now_serving)


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
