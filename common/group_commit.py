"""Requests answered together once one write made their beacons durable.

A collector's 202 promises that the beacon survives a crash of the process, so it
waits for the write that logs it (``storage.intake_log``, or the Kafka collector's
spool). One write serves every request that arrived while the previous one was
being made: a ``GroupCommit`` gathers them, and its owner calls ``done`` once,
from the event loop's thread, when the write is made (or failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class GroupCommit:
    """One write's waiters: callbacks (the HTTP server's direct path) and coroutines."""

    __slots__ = ("ok", "_callbacks")

    def __init__(self) -> None:
        self.ok: bool | None = None  # None until done: True when durable, False when the write failed
        self._callbacks: list[Callable[[bool], None]] = []

    def then(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(ok)`` once done (at once when done already)."""
        if self.ok is None:
            self._callbacks.append(callback)
        else:
            callback(self.ok)

    async def wait(self) -> bool:
        """A future per waiter, not one shared: the HTTP server runs a request's first
        step outside a task (``web.trampoline``), and coroutines that yielded the same
        future before their tasks existed would share its blocking flag."""
        if self.ok is not None:
            return self.ok
        future = asyncio.get_running_loop().create_future()
        self._callbacks.append(lambda ok: future.cancelled() or future.set_result(ok))  # cancelled: the client left
        return await future

    def done(self, ok: bool) -> None:
        self.ok = ok
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(ok)
