"""Load for crash tests: keep-alive clients posting beacons, each with its own path,
while a process is killed; records which beacons were acknowledged (2xx), which
are in doubt (the request got no answer: the crash may have come before or after
they were stored) and which were refused (503)."""

from __future__ import annotations

import json
import threading
from collections import Counter

import httpx

from tests.faults import CHROME


class CrashLoad:
    def __init__(
        self,
        url: str,
        clients: int = 8,
        batch: int = 5,
        site: str = "example.com",
        prefix: str = "/k",
        headers: dict[str, str] | None = None,
    ):
        self.url, self.batch, self.site, self.prefix = url, batch, site, prefix
        self.headers = {"User-Agent": CHROME, "Content-Type": "text/plain"} | (headers or {})
        self.acknowledged: list[str] = []
        self.in_doubt: list[str] = []
        self.refused: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), name=f"crash-load-{n}", daemon=True)
            for n in range(clients)
        ]

    def start(self) -> CrashLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "the load did not stop"
        assert not self.errors, self.errors[:5]

    def _client(self, client: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                paths = [f"{self.prefix}/{client}/{n + k}" for k in range(self.batch)]
                n += self.batch
                body = json.dumps([{"site": self.site, "url": f"https://{self.site}{p}"} for p in paths])
                try:
                    answer = http.post(f"{self.url}/collect", content=body, headers=self.headers)
                except httpx.TransportError:
                    self.in_doubt += paths
                    self._stop.wait(0.02)  # the server is down: do not spin
                    continue
                if answer.status_code == 202 and answer.json() == {"accepted": len(paths)}:
                    self.acknowledged += paths
                elif answer.status_code == 503:
                    self.refused += paths
                else:
                    self.errors.append(f"{answer.status_code} {answer.text[:200]}")


def assert_stored_exactly_once(stored: list[dict], load: CrashLoad) -> None:
    """``stored``: rows of ``SELECT path, count() AS n … GROUP BY path``. Every
    acknowledged beacon is stored once; a beacon in doubt at most once; nothing else."""
    counts = {row["path"]: int(row["n"]) for row in stored}
    doubled = {p: n for p, n in counts.items() if n != 1}
    lost = set(load.acknowledged) - set(counts)
    unexpected = set(counts) - set(load.acknowledged) - set(load.in_doubt)
    assert not doubled and not lost and not unexpected, (
        f"{len(load.acknowledged)} acknowledged, {len(load.in_doubt)} in doubt, {sum(counts.values())} stored: "
        f"doubled {sorted(doubled)[:5]} ({len(doubled)}), lost {sorted(lost)[:5]} ({len(lost)}), "
        f"never acknowledged {sorted(unexpected)[:5]} ({len(unexpected)})"
    )
    sent = load.acknowledged + load.in_doubt + load.refused
    assert Counter(sent) == Counter(set(sent)), "a path was sent twice: the test is wrong"
