"""Helpers of the tests that put a known load on a running collector and wait for
what it causes."""

from __future__ import annotations

import json
import threading
import time

import httpx

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


class Load:
    """Beacons at a steady pace from a thread; counts those accepted, with their time."""

    def __init__(self, url: str, per_second: float, batch: int = 1, site: str = "example.com"):
        self.url, self.pause, self.batch, self.site = url, batch / per_second, batch, site
        self.accepted: list[float] = []  # arrival time of each accepted beacon
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rate(self, seconds: float) -> float:
        """Beacons accepted per second over the last ``seconds``."""
        now = time.time()
        return sum(1 for t in self.accepted if t > now - seconds) / seconds

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            i = 0
            while not self._stop.wait(self.pause):
                body = [{"site": self.site, "url": f"https://{self.site}/p/{i + k}"} for k in range(self.batch)]
                i += self.batch
                answer = http.post(
                    f"{self.url}/collect",
                    content=json.dumps(body),
                    headers={"Content-Type": "text/plain", "User-Agent": CHROME},
                )
                if answer.status_code == 202:
                    self.accepted += [time.time()] * answer.json()["accepted"]


def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.2)


def near(measured: float | None, expected: float, tolerance: float = 0.25) -> bool:
    return measured is not None and abs(measured - expected) <= tolerance * expected
