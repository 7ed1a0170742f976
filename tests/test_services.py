"""beacon.services: a process's parts started in order, stopped in reverse, and a
start that fails stops what had started."""

from __future__ import annotations

import asyncio
import threading

import pytest

from beacon.services import Service, Services, in_thread


class Part:
    """A part that starts a real thread, as the directories and the buffer do; sync or async."""

    def __init__(self, name: str, journal: list[str], is_async: bool = False, fails_to: str = ""):
        self.name, self.journal, self.is_async, self.fails_to = name, journal, is_async, fails_to
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.stopping.wait, name=f"part-{name}", daemon=True)

    def service(self) -> Service:
        return Service(
            self.name,
            self._async(self._start) if self.is_async else self._start,
            self._async(self._stop) if self.is_async else self._stop,
        )

    def _start(self) -> None:
        if self.fails_to == "start":
            raise RuntimeError(f"{self.name} cannot start")
        self.thread.start()
        self.journal.append(f"start {self.name}")

    def _stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.journal.append(f"stop {self.name}")
        if self.fails_to == "stop":
            raise RuntimeError(f"{self.name} cannot stop")

    @staticmethod
    def _async(action):
        async def run() -> None:
            await asyncio.sleep(0)
            action()

        return run


def parts(journal: list[str], count: int, **failing: str) -> list[Part]:
    return [Part(f"p{i}", journal, is_async=i % 2 == 1, fails_to=failing.get(f"p{i}", "")) for i in range(count)]


def test_services_start_in_order_and_stop_in_reverse_sync_and_async_alike():
    journal: list[str] = []
    made = parts(journal, 4)
    services = Services([p.service() for p in made])
    asyncio.run(services.start())
    assert journal == ["start p0", "start p1", "start p2", "start p3"]
    assert all(p.thread.is_alive() for p in made)
    asyncio.run(services.stop())
    assert journal[4:] == ["stop p3", "stop p2", "stop p1", "stop p0"]
    assert not any(p.thread.is_alive() for p in made)


@pytest.mark.parametrize("failing", [0, 1, 2, 3])
def test_a_start_that_fails_stops_those_started_before_it_in_reverse(failing):
    journal: list[str] = []
    made = parts(journal, 4, **{f"p{failing}": "start"})
    services = Services([p.service() for p in made])
    with pytest.raises(RuntimeError, match=f"p{failing} cannot start"):
        asyncio.run(services.start())
    started = [f"p{i}" for i in range(failing)]
    assert journal == [f"start {name}" for name in started] + [f"stop {name}" for name in reversed(started)]
    assert not any(p.thread.is_alive() for p in made)  # no thread left running
    asyncio.run(services.stop())  # the lifespan's shutdown after a failed startup: nothing more to stop
    assert len(journal) == 2 * failing


def test_a_stop_that_fails_does_not_keep_the_others_running_and_is_raised_at_the_end():
    journal: list[str] = []
    made = parts(journal, 3, p1="stop")
    services = Services([p.service() for p in made])
    asyncio.run(services.start())
    with pytest.raises(RuntimeError, match="p1 cannot stop"):
        asyncio.run(services.stop())
    assert journal[3:] == ["stop p2", "stop p1", "stop p0"]
    assert not any(p.thread.is_alive() for p in made)


def test_a_blocking_stop_in_a_thread_leaves_the_loop_serving():
    release = threading.Event()
    served: list[str] = []

    async def scenario() -> None:
        stopping = asyncio.ensure_future(in_thread(lambda: release.wait(5))())
        await asyncio.sleep(0)
        served.append("the loop answered while the stop blocked")  # it runs before the stop ends
        assert not stopping.done()
        release.set()
        await stopping

    asyncio.run(scenario())
    assert served
