"""Run ``beacon serve`` and the ``beacon`` CLI as real subprocesses for tests."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BEACON = [sys.executable, "-m", "beacon.cli"]


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port from that range, free
    when asked, can be taken by any outgoing connection before a slow-starting
    process binds it (a broker's start failed so in CI). Each pytest worker
    (tests/run.sh runs two) draws from a slice of its own, so no worker can take a
    port another one has just drawn, or one a broker it stopped will take again."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    first, last = max(1024, low - 12_000), low
    worker, workers = _worker()
    width = (last - first) // workers
    first += worker * width
    while True:
        port = _RANDOM.randrange(first, first + width)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


_RANDOM = random.SystemRandom()  # not the global generator: a test or plugin may seed that


def _worker() -> tuple[int, int]:
    """This process's pytest-xdist worker (gw0, gw1, …) and how many there are; (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not name.startswith("gw"):
        return 0, 1
    return int(name[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*BEACON, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"beacon {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class BeaconServer:
    def __init__(self, data_dir: Path, *extra: str, code: Path | None = None):
        self.data_dir = data_dir
        self.code = code  # another release's source tree to run (`python -m` puts its cwd first on the path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self._args = [*BEACON, "serve", "--data-dir", str(data_dir), "--port", str(self.port), *extra]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> BeaconServer:
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(self._args, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=self.code)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"beacon serve exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"beacon serve not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60) -> bool:
        """SIGTERM, as a service manager would; True when the shutdown was graceful
        (exit status 0 and the last log line says so)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log_file.close()
        return code == 0 and '"msg":"stopped"' in self.log.read_text()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def query(self, sql: str) -> list[dict]:
        out = cli("query", "--data-dir", str(self.data_dir), "--format", "json", sql).stdout
        return [json.loads(line) for line in out.splitlines() if line]

    def __enter__(self) -> BeaconServer:
        # `with BeaconServer(d).start():` must not start a second process beside the first.
        return self if self.process is not None else self.start()

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.stop()
