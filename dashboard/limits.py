"""Failed sign-ins per client address, in this process's memory: the addresses are
never stored nor logged, and are forgotten once their failures are out of the window.
(Failures per account are counted in the store, ``storage.accounts.recent_failures``,
so that every HTTP process sees them.)"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureWindow:
    """At most ``limit`` failures per key in the last ``window`` seconds."""

    def __init__(
        self, limit: int, window: float, max_keys: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        recent = self._recent(key)
        if len(recent) < self.limit:
            return 0
        return max(1, int(recent[0] + self.window - self._monotonic() + 0.999))

    def failed(self, key: str) -> None:
        recent = self._recent(key)
        recent.append(self._monotonic())
        self._failures[key] = recent
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:  # forged addresses cannot grow it without bound
            self._failures.popitem(last=False)

    def _recent(self, key: str) -> deque[float]:
        recent = self._failures.get(key, deque())
        horizon = self._monotonic() - self.window
        while recent and recent[0] <= horizon:
            recent.popleft()
        if not recent:
            self._failures.pop(key, None)
        return recent
