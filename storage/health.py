"""``store_writable``, a /readyz check: the store takes writes (not read-only) and
its disks have room; ``cause()`` says which of them fails (/readyz shows it).

The check itself must not wait on the store (/readyz answers from the HTTP loop, and
a query can queue behind a long one), so a thread asks every ``every`` seconds and
the check reads the last answer. A full disk shows within ``every`` seconds; an
answer older than ``stale_after`` seconds counts as a failure (the store stopped
answering), which a long export or dashboard query holding the reads' client must
not trigger.
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
    def __init__(self, store: Store, every: float = 2.0, stale_after: float = 30.0):
        self.store = store
        self.every = every
        self.stale_after = stale_after
        self._ok_at = float("-inf")  # monotonic time of the last passing probe
        self._problem = ""  # why the last answer failed ("" when it passed, or none came)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)

    def start(self) -> None:
        self.probe()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def ok(self) -> bool:
        return time.monotonic() - self._ok_at < self.stale_after

    def cause(self) -> str:
        """Why ``ok()`` fails ("" while it passes)."""
        if self.ok():
            return ""
        return self._problem or f"no answer from the store for {self.stale_after:.0f} s"

    def probe(self) -> None:
        try:
            ((readonly, free, total),) = self.store.rows(
                "SELECT getSetting('readonly'), min(free_space), min(total_space) FROM system.disks"
            )
        except Exception as exc:  # an outage: the check fails once the last answer is old
            self._problem = ""
            log.warning("store health not read", extra={"error": type(exc).__name__})
            return
        needed = int(min(MIN_FREE_BYTES, MIN_FREE_SHARE * total))
        if int(readonly) != 0:
            problem = "the store is read-only"
        elif free < needed:
            problem = f"disk full: {int(free)} bytes free of {int(total)}, {needed} needed"
        else:
            problem = ""
        if problem and not self._problem:  # once, not every round while it lasts
            log.warning("store not writable", extra={"cause": problem})
        self._problem = problem
        self._ok_at = float("-inf") if problem else time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.probe()
