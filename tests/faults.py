"""What the fault tests share: a small disk to fill (a size-limited tmpfs), a load
that records exactly which beacons were acknowledged, and polling to a deadline."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """The first truthy answer of ``probe``, asked every ``every`` s until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"not within {timeout} s: {what} (last: {answer!r})"
        time.sleep(every)


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """``directory`` as a tmpfs of ``size`` (mount's syntax: 16m) while in the block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs (a disk to fill) needs root")
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], capture_output=True)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s disk with one file; returns it (delete it
    to give the room back)."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with open(filler, "ab", buffering=0) as fh:  # the last partial page, byte by byte
        try:
            for _ in range(1 << 16):
                fh.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


class Acknowledged:
    """Beacons posted from a thread, each with its own path (/f/<n>), recording which
    were acknowledged (2xx) and what the refusals said; any other answer is an error.

    ``paused`` stops the posting without ending the thread."""

    def __init__(
        self,
        url: str,
        site: str = "example.com",
        batch: int = 5,
        pause: float = 0.01,
        headers: dict[str, str] | None = None,
    ):
        self.url, self.site, self.batch, self.pause = url, site, batch, pause
        self.headers = {"User-Agent": CHROME, "Content-Type": "text/plain"} | (headers or {})
        self.acknowledged: list[str] = []  # paths
        self.refused: list[httpx.Response] = []
        self.errors: list[str] = []
        self.accepted_since_refusal = 0  # acknowledged beacons after the latest refusal
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acknowledged-load", daemon=True)

    def start(self) -> Acknowledged:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the load; fails on any answer that was neither 202 nor 503."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)
        assert not self._thread.is_alive(), "the load did not stop"
        assert not self.errors, self.errors[:5]

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=30) as http:
            while not self._stop.wait(self.pause):
                if self.paused.is_set():
                    continue
                paths = [f"/f/{n + k}" for k in range(self.batch)]
                n += self.batch
                body = [{"site": self.site, "url": f"https://{self.site}{p}"} for p in paths]
                try:
                    answer = http.post(f"{self.url}/collect", content=json.dumps(body), headers=self.headers)
                except httpx.TransportError as exc:  # not acknowledged: the client would retry
                    self.errors.append(f"transport: {type(exc).__name__}")
                    continue
                if answer.status_code == 202 and answer.json() == {"accepted": len(paths)}:
                    self.acknowledged += paths
                    self.accepted_since_refusal += len(paths)
                elif answer.status_code == 503:
                    self.refused.append(answer)
                    self.accepted_since_refusal = 0
                else:
                    self.errors.append(f"{answer.status_code} {answer.text[:200]}")


def exactly_once(stored: list[dict], acknowledged: list[str]) -> None:
    """``stored``: rows of ``SELECT path, count() AS n … GROUP BY path``. Every
    acknowledged beacon is there once, and nothing else."""
    counts = {row["path"]: int(row["n"]) for row in stored}
    doubled = {p: n for p, n in counts.items() if n != 1}
    missing = set(acknowledged) - set(counts)
    unexpected = set(counts) - set(acknowledged)
    assert not doubled and not missing and not unexpected, (
        f"{len(acknowledged)} acknowledged, {sum(counts.values())} stored: doubled {sorted(doubled)[:5]}, "
        f"lost {sorted(missing)[:5]} ({len(missing)}), never acknowledged {sorted(unexpected)[:5]} ({len(unexpected)})"
    )
    assert Counter(acknowledged) == Counter(set(acknowledged)), "a path was sent twice: the test is wrong"
