"""A process's long-lived parts as one list of services: started in the order
listed, stopped in reverse, so that each part stops while what it needs still
runs (the embedded mode's drain, ``handoff.flush``, needs the salts, the GeoIP
reader and the buffer: they are listed before it). A start that fails stops
those already started, in reverse, then the failure goes on to the caller.

The lists live in the process functions (``beacon.wiring``, ``beacon.serve_workers``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("beacon.services")

# A start or stop: a plain function, or one that returns something to await.
Action = Callable[[], "Awaitable[object] | object"]


def nothing() -> None:
    return None


@dataclass(frozen=True)
class Service:
    """Bound methods of a part, under the name its logs use."""

    name: str
    start: Action = nothing
    stop: Action = nothing


class Services:
    """``start`` and ``stop`` for a list of services, as lifespan hooks (``web.routing.Router``)."""

    def __init__(self, services: list[Service]):
        self.services = services
        self._started: list[Service] = []

    async def start(self) -> None:
        for service in self.services:
            try:
                await _run(service.start)
            except BaseException:
                log.error("a service failed to start; stopping those started", extra={"service": service.name})
                await self.stop()
                raise
            self._started.append(service)

    async def stop(self) -> None:
        """Stop every started service, in reverse, even when one fails to; then raise
        the first failure."""
        failure: BaseException | None = None
        while self._started:
            service = self._started.pop()
            try:
                await _run(service.stop)
            except BaseException as exc:
                log.exception("a service failed to stop", extra={"service": service.name})
                failure = failure or exc
        if failure is not None:
            raise failure


def in_thread(action: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    """A blocking action run in the loop's default executor, so that the loop goes on
    serving meanwhile (the owner's control socket while its buffer drains)."""
    return lambda: asyncio.get_running_loop().run_in_executor(None, action)


async def _run(action: Action) -> None:
    result = action()
    if inspect.isawaitable(result):
        await result
