"""The visitor hash's daily salts in the Kafka deployment: topic ``privacy.salts``.

Workers on several machines must hash a visitor with the same salt, so the salt of
each UTC day travels through a one-partition topic (key ``YYYYMMDD``, value 16
random bytes). Every worker reads the whole topic from its beginning, outside any
consumer group (``streams.follower``).

Agreement. A worker that needs a day's salt and has not read one proposes a random
salt for that day, then waits until it reads a record for the day back. Everybody
adopts the FIRST record of a day in the partition's total order, so all agree
whoever proposed; a loser's proposal is never used. A worker that reads a different
value for a day it has adopted (a lost race) republishes the adopted salt within a
minute, so the copies written after a race all hold the winner.

Keeping it while it is needed, destroying it within 48 h. The topic is
``cleanup.policy=delete`` with ``message.timestamp.type=LogAppendTime`` (the
broker's clock stamps each record). Kafka deletes whole segments, oldest first,
once their newest record is older than ``retention.ms``, checked every
``log.retention.check.interval.ms``. Let a day D start at T. While day D is current
(by the worker's clock) workers republish D's salt when its newest copy is older
than an hour, so it is always on the topic for workers that start late; nobody
writes a record for D after D has ended (past days are read, never proposed), so
the last record holding D's salt is appended before T + 24 h + ε (ε: a worker's
clock behind the broker's, and the produce delay; assumed ≤ 5 min). Its segment
rolls once a record arrives more than ``segment.ms`` after the segment's first one,
so the segment's newest record is at most ``segment.ms`` later than ours. It is
deleted at most ``retention.ms`` + one check interval after that:

    T + 24 h + ε (5 min) + segment.ms (1 h) + retention.ms (22 h) + check (≤ 5 min) = T + 47 h 10 min < T + 48 h

And it stays readable until at least T + 24 h − 1 h + 22 h = T + 45 h: a worker that
starts after midnight with a backlog of yesterday's raw beacons reads yesterday's
salt from the topic. Past that, or when the day has no salt (nobody proposed one
while the day was current), the beacon gets visitor_id 0 and the filter counts it
(``beacon_filter_actions_total{action="visitor_unhashed"}``).

Why not compaction: a compacted log keeps the LAST record of a key, which would
undo first-record-wins, and the cleaner merges old segments into newer ones, which
can carry an old salt record into a segment with newer timestamps and so past 48 h.

In memory a day is forgotten 48 h after it began. The salt is never logged (log
lines carry the day only) and never stored.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer, ConsumerRecord

from streams.follower import follow_topic
from streams.visitor import SALT_BYTES, utc_day

log = logging.getLogger("beacon.salts")

HOUR_MS = 3_600_000
# The topic's settings; the arithmetic above depends on each of them.
SALT_TOPIC_CONFIG = {
    "cleanup.policy": "delete",
    "message.timestamp.type": "LogAppendTime",
    "retention.ms": str(22 * HOUR_MS),
    "segment.ms": str(HOUR_MS),
}
REPUBLISH_AFTER = 3600.0  # seconds: the current day's salt is rewritten when its newest copy is older
CHECK_EVERY = 60.0
WAIT_SECONDS = 30.0


def days_of(timestamps: Iterable[float]) -> set[int]:
    """The UTC days of a batch's beacons (formatted once per day, not per beacon)."""
    return {utc_day(d * 86400) for d in {int(ts // 86400) for ts in timestamps}}


def day_key(day: int) -> bytes:
    return str(day).encode()


class KafkaSalts:
    """``salt(day)`` for the filter, from the salts topic. ``follow()`` must run (a
    task of the worker's event loop), and ``prepare(days)`` be awaited before a batch
    is filtered: it obtains the salts the batch needs."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        clock: Callable[[], float] = time.time,
        wait_seconds: float = WAIT_SECONDS,
        check_every: float = CHECK_EVERY,
    ):
        self.bootstrap, self.topic, self.clock = bootstrap, topic, clock
        self.wait_seconds, self.check_every = wait_seconds, check_every
        self._salts: dict[int, bytes] = {}
        self._newest_copy: dict[int, float] = {}  # broker time of the newest record with the adopted salt
        self._destroyed: set[int] = set()  # days whose salt was withdrawn (a tombstone)
        self._reported: set[int] = set()  # past days without a salt, logged once
        self._caught_up = asyncio.Event()
        self._news = asyncio.Event()
        self._proposing = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None

    # --- what the filter uses ------------------------------------------------------

    def salt(self, day: int) -> bytes | None:
        """The day's salt, or None: destroyed, too old, or never made (visitor_id 0)."""
        return self._salts.get(day)

    async def prepare(self, days: Iterable[int]) -> None:
        self._forget_old()
        missing = [d for d in days if d not in self._salts and d not in self._destroyed]
        for day in missing:
            await self._obtain(day)

    # --- following and writing the topic ----------------------------------------------

    async def follow(self) -> None:
        """Read the topic and keep the current day's salt on it; runs until cancelled."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap.split(","), acks="all")
        await self._producer.start()
        try:
            await asyncio.gather(
                follow_topic(self.bootstrap, self.topic, self._apply, self._caught_up), self._keep_current_salts()
            )
        finally:
            await self._producer.stop()

    async def destroy(self, day: int) -> None:
        """Withdraw a day's salt now (a tombstone): every worker forgets it and hashes
        that day's beacons as visitor_id 0. The records themselves go with retention."""
        await self._send(day, None)

    def _apply(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            if record.key and record.key.isdigit():  # anything else is not ours: ignored
                self._apply_one(int(record.key), record.value, record.timestamp / 1000)
        self._forget_old()
        self._news.set()
        self._news = asyncio.Event()

    def _apply_one(self, day: int, value: bytes | None, appended_at: float) -> None:
        if value is None:
            self._destroyed.add(day)
            self._salts.pop(day, None)
        elif day in self._destroyed:
            return
        elif day not in self._salts:  # the first record of the day wins
            self._salts[day] = value
            self._newest_copy[day] = appended_at
            log.info("visitor salt adopted", extra={"day": day})
        elif value == self._salts[day]:
            self._newest_copy[day] = max(appended_at, self._newest_copy.get(day, 0.0))
        else:  # a lost race: make sure the newest copies hold the winner
            self._newest_copy[day] = 0.0
            log.info("visitor salt race lost by another proposal", extra={"day": day})

    async def _obtain(self, day: int) -> None:
        async with self._proposing:
            if not await self._wait(self._caught_up.is_set):
                log.warning("salts topic not read yet", extra={"topic": self.topic})
                return
            if day in self._salts or day in self._destroyed:
                return
            if day < utc_day(self.clock()):
                # A record written now for a past day could outlive its 48 h: never made.
                if day not in self._reported:
                    self._reported.add(day)
                    log.warning("no visitor salt for a past day: its beacons get visitor_id 0", extra={"day": day})
                return
            await self._send(day, secrets.token_bytes(SALT_BYTES))
            log.info("visitor salt proposed", extra={"day": day})
            if not await self._wait(lambda: day in self._salts or day in self._destroyed):
                log.warning("visitor salt not read back", extra={"day": day})

    async def _wait(self, done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.wait_seconds
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(
                    self._news.wait() if self._caught_up.is_set() else self._caught_up.wait(), min(remaining, 0.5)
                )
            except TimeoutError:
                pass
        return True

    async def _keep_current_salts(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            self._forget_old()  # also when no beacon comes: a salt must not outlive 48 h
            if self._caught_up.is_set():
                await self.republish_stale()

    async def republish_stale(self) -> None:
        """Rewrite the salt of today (and of a later day already made) when its newest
        copy is older than ``REPUBLISH_AFTER``, or a lost race left another value last."""
        now = self.clock()
        today = utc_day(now)
        for day, salt in list(self._salts.items()):
            if day >= today and now - self._newest_copy.get(day, 0.0) > REPUBLISH_AFTER:
                self._newest_copy[day] = now  # one copy per interval, even before it is read back
                await self._send(day, salt)

    async def _send(self, day: int, value: bytes | None) -> None:
        assert self._producer is not None, "follow() is not running"
        await self._producer.send_and_wait(self.topic, key=day_key(day), value=value, partition=0)

    def _forget_old(self) -> None:
        """Days that began more than 48 h ago: their salt is gone from memory."""
        oldest_kept = utc_day(self.clock() - 86400)  # yesterday
        for day in [d for d in self._salts.keys() | self._destroyed | self._reported if d < oldest_kept]:
            self._salts.pop(day, None)
            self._newest_copy.pop(day, None)
            self._destroyed.discard(day)
            self._reported.discard(day)
