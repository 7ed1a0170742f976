"""The ASGI lifespan scope: the app's startup before serving, its shutdown after."""

from __future__ import annotations

import asyncio

from web.types import ASGI_VERSION, ASGIApp


class LifespanFailure(RuntimeError):
    pass


class Lifespan:
    """Drives the app's ASGI lifespan scope: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._done: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._phase("startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._phase("shutdown")
            await self._task

    async def _phase(self, phase: str) -> None:
        self._done[phase] = asyncio.get_running_loop().create_future()
        await self._inbox.put({"type": f"lifespan.{phase}"})
        done, _ = await asyncio.wait([self._done[phase], self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._done[phase] not in done:  # the app returned or raised instead of answering
            error = self._task.exception()
            raise LifespanFailure(f"{phase} failed: {error!r}") from error
        message = self._done[phase].result()
        if message["type"].endswith(".failed"):
            raise LifespanFailure(f"{phase} failed: {message.get('message', '')}")

    async def _run(self) -> None:
        await self.app({"type": "lifespan", "asgi": ASGI_VERSION, "state": {}}, self._inbox.get, self._answer)

    async def _answer(self, message: dict) -> None:
        phase = message["type"].split(".")[1]
        self._done[phase].set_result(message)
