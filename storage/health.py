"""``store_writable``, a /readyz check: the store takes writes (not read-only) and
its disks have room.

The check itself must not wait on the store (/readyz answers from the HTTP loop, and
a query can queue behind a long one), so a thread asks every ``every`` seconds and
the check reads the last answer; an answer older than three rounds counts as a
failure (the store stopped answering).
"""
from __future__ import annotations

import logging
import threading
import time

from storage.clickhouse import Store

log = logging.getLogger("beacon.health")

MIN_FREE_BYTES = 1 << 30  # or 5 % of the disk, whichever is smaller
MIN_FREE_SHARE = 0.05


class StoreWritable:
    def __init__(self, store: Store, every: float = 10.0):
        self.store = store
        self.every = every
        self._ok_at = float("-inf")  # monotonic time of the last passing probe
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)

    def start(self) -> None:
        self.probe()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def ok(self) -> bool:
        return time.monotonic() - self._ok_at < 3 * self.every

    def probe(self) -> None:
        try:
            (readonly, free, total), = self.store.rows(
                "SELECT getSetting('readonly'), min(free_space), min(total_space) FROM system.disks")
        except Exception as exc:  # an outage: the check fails once the last answer is old
            log.warning("store health not read", extra={"error": type(exc).__name__})
            return
        writable = int(readonly) == 0 and free >= min(MIN_FREE_BYTES, MIN_FREE_SHARE * total)
        self._ok_at = time.monotonic() if writable else float("-inf")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.probe()
