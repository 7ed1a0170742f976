"""A per-client rate limit (token bucket) for routes that write a row each time they
are used, such as ``POST /optout``: a client may make ``burst`` requests at once,
then one every ``60 / per_minute`` seconds.

The buckets live only in this process's memory, keyed by the client's address for as
long as the bucket is not full again; nothing of them is stored or logged. Their
number is bounded: past ``max_clients``, full buckets are dropped first, and if all
are in use the oldest go (a client so dropped only gets its burst back).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class PerClientRateLimit:
    def __init__(
        self, per_minute: float, burst: int, max_clients: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ):
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = burst
        self.max_clients = max_clients
        self._monotonic = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, when)

    def allow(self, client: str) -> bool:
        """Whether ``client`` may make one more request now (and it is counted)."""
        now = self._monotonic()
        tokens = self._tokens(client, now)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        self._buckets.move_to_end(client)
        if len(self._buckets) > self.max_clients:
            self._evict(now)
        return True

    def retry_after(self, client: str) -> int:
        """Whole seconds until ``client`` has a request again."""
        missing = 1.0 - self._tokens(client, self._monotonic())
        return max(1, int(missing / self.rate + 0.999)) if missing > 0 else 0

    def _tokens(self, client: str, now: float) -> float:
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def _evict(self, now: float) -> None:
        full = [client for client in self._buckets if self._tokens(client, now) >= self.burst]
        for client in full:
            del self._buckets[client]
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
