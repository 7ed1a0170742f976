"""The embedded mode's handoff (streams/embedded.py): beacons accepted by requests
are filtered a few milliseconds later, together, and none is lost on the way."""

from __future__ import annotations

import asyncio
import logging
import re

import orjson

from common import metrics
from schemas.events import Beacon, RawEvent, RequestContext
from streams.embedded import FILTER_BATCH, FILTER_WAIT, FilteringHandoff
from streams.geo import GeoLookup
from streams.privacy_filter import FilterEnv

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


def _raw(i: int, ip: str = "203.0.113.200") -> RawEvent:
    return RawEvent(
        f"00000000-0000-4000-8000-{i:012d}",
        Beacon("example.com", f"https://example.com/p/{i}"),
        RequestContext(1.7e9 + i, ip, CHROME),
    )


class Delivered:
    """A RowSink that keeps what it is given, with room for ``room`` rows at once."""

    def __init__(self, room: int = 10_000) -> None:
        self.room = room
        self.chunks: list[tuple[list[dict], int]] = []

    def has_room(self, rows: int) -> bool:
        return rows <= self.room

    def add(self, chunk: bytes, rows: int, arrival: float) -> None:
        self.chunks.append(([orjson.loads(line) for line in chunk.split(b"\n")], rows))

    def ready(self) -> bool:
        return True

    @property
    def paths(self) -> list[str]:
        return [row["path"] for rows, _ in self.chunks for row in rows]


def _handoff(delivered: Delivered, geo=None) -> FilteringHandoff:
    return FilteringHandoff(FilterEnv(geo=geo or GeoLookup(None)), delivered)


def test_beacons_of_a_few_milliseconds_are_filtered_together():
    delivered = Delivered()
    handoff = _handoff(delivered)

    async def scenario() -> None:
        for i in range(3):
            assert handoff.submit([_raw(i)])
            await asyncio.sleep(0)
        assert delivered.chunks == []  # accepted, not filtered yet: the IP is still whole, in memory only
        await asyncio.sleep(FILTER_WAIT * 4)

    asyncio.run(scenario())
    assert [rows for _, rows in delivered.chunks] == [3]
    assert delivered.paths == ["/p/0", "/p/1", "/p/2"]
    assert {row["ip_truncated"] for rows, _ in delivered.chunks for row in rows} == {"203.0.113.0"}


def test_a_full_batch_is_filtered_at_the_next_turn_of_the_loop():
    delivered = Delivered()
    handoff = _handoff(delivered)

    async def scenario() -> None:
        assert handoff.submit([_raw(i) for i in range(FILTER_BATCH)])
        await asyncio.sleep(0)
        assert [rows for _, rows in delivered.chunks] == [FILTER_BATCH]  # before the timer's FILTER_WAIT

    asyncio.run(scenario())


def test_waiting_beacons_count_against_the_room_downstream():
    delivered = Delivered(room=5)
    handoff = _handoff(delivered)

    async def scenario() -> None:
        assert handoff.submit([_raw(i) for i in range(4)])
        assert not handoff.submit([_raw(4), _raw(5)])  # 4 waiting + 2 > 5: the collector answers 503
        assert handoff.submit([_raw(4)])
        handoff.flush()

    asyncio.run(scenario())
    assert delivered.paths == ["/p/0", "/p/1", "/p/2", "/p/3", "/p/4"]


class FailingGeo(GeoLookup):
    """A filter bug that shows only on one address."""

    def locate(self, ip):
        if ip is not None and ip.text == "198.51.100.66":
            raise KeyError("a bug")
        return super().locate(ip)


def test_a_beacon_the_filter_fails_on_does_not_take_the_others_with_it(caplog):
    delivered = Delivered()
    handoff = _handoff(delivered, geo=FailingGeo(None))

    async def scenario() -> None:
        handoff.submit([_raw(0), _raw(1, ip="198.51.100.66"), _raw(2)])
        handoff.flush()

    errors_before = _filter_errors()
    with caplog.at_level(logging.ERROR, logger="beacon.pipeline"):
        asyncio.run(scenario())
    assert delivered.paths == ["/p/0", "/p/2"]
    assert _filter_errors() == errors_before + 1
    assert [r.error for r in caplog.records] == ["KeyError"]
    assert "198.51.100.66" not in caplog.text


def _filter_errors() -> float:
    found = re.search(
        r'^beacon_filter_actions_total\{action="filter_error"\} (\S+)$', metrics.exposition().decode(), re.M
    )
    return float(found.group(1)) if found else 0.0


def test_the_owners_buffer_and_a_workers_shipper_are_both_row_sinks():
    """FilteringHandoff takes either: both have RowSink's three methods, with its parameters."""
    import inspect

    from storage.row_buffer import RowBuffer
    from storage.row_channel import RowShipper
    from storage.row_sink import RowSink

    for sink in (RowBuffer, RowShipper, Delivered):
        for method in ("has_room", "add", "ready"):
            assert list(inspect.signature(getattr(sink, method)).parameters) == list(
                inspect.signature(getattr(RowSink, method)).parameters
            ), (sink, method)
