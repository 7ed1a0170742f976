"""Resuming a coroutine inside a task, once its first step ran outside one.

The server runs an app's coroutine synchronously until it first waits (most
answers never do: no task is made for them); only a coroutine that does wait
becomes a task, which must carry on from where it stopped rather than start over.
"""

from __future__ import annotations


async def finish(coroutine, awaited):
    """The rest of a coroutine whose first step is done and waits on ``awaited``."""
    return await Resumed(coroutine, awaited)


class Resumed:
    """Awaitable that hands the task what the coroutine waits on, and the task's
    answers (a result, or an exception such as CancelledError) back to it."""

    __slots__ = ("coroutine", "awaited")

    def __init__(self, coroutine, awaited):
        self.coroutine = coroutine
        self.awaited = awaited

    def __await__(self):
        awaited = self.awaited
        while True:
            try:
                answer = yield awaited
            except BaseException as exc:
                resume, value = self.coroutine.throw, exc
            else:
                resume, value = self.coroutine.send, answer
            try:
                awaited = resume(value)
            except StopIteration as stop:
                return stop.value
