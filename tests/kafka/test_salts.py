"""KafkaSalts on the real broker: workers agree on a day's salt through the salts
topic, days differ, and a salt gone from the topic cannot be had back."""

from __future__ import annotations

import asyncio
import calendar
import os
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.salts_topic import SALT_TOPIC_CONFIG, KafkaSalts
from streams.topics import TopicSpec, admin_client, ensure
from streams.visitor import utc_day, visitor_id
from tests.kafka.pipeline import BOOTSTRAP, CHROME

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

DAY = 86400
NOON = calendar.timegm((2026, 3, 1, 12, 0, 0))
VISITOR = ("example.com", "203.0.113.5", CHROME)


class Clock:
    """A settable clock: days pass without waiting for midnight."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def salts_topic(config: dict[str, str] | None = None) -> str:
    name = f"t{uuid.uuid4().hex[:8]}.salts"
    admin = admin_client(BOOTSTRAP)
    try:
        ensure(admin, [TopicSpec(name, 1, config or SALT_TOPIC_CONFIG)], replication_factor=1)
    finally:
        admin.close()
    return name


class Workers:
    """KafkaSalts instances following one topic, as the tasks of workers would."""

    def __init__(self, topic: str):
        self.topic, self.tasks = topic, []

    def start(self, clock: Clock) -> KafkaSalts:
        salts = KafkaSalts(BOOTSTRAP, self.topic, clock=clock, wait_seconds=20)
        self.tasks.append(asyncio.create_task(salts.follow()))
        return salts

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def hash_of(salts: KafkaSalts, ts: float) -> int:
    return visitor_id(salts, ts, *VISITOR)


def test_workers_agree_on_the_first_salt_proposed_for_a_day():
    async def scenario():
        workers, clock = Workers(salts_topic()), Clock(NOON)
        one, two = workers.start(clock), workers.start(clock)
        await asyncio.gather(one.prepare([utc_day(NOON)]), two.prepare([utc_day(NOON)]))  # both may propose
        late = workers.start(clock)  # starts after the race: reads the winner
        await late.prepare([utc_day(NOON)])
        hashes = {hash_of(s, NOON) for s in (one, two, late)}
        await workers.stop()
        return hashes, len(one.salt(utc_day(NOON)))

    hashes, salt_length = asyncio.run(scenario())
    assert len(hashes) == 1 and 0 not in hashes
    assert salt_length == 16


def test_each_day_has_its_own_salt_and_old_days_are_forgotten_after_48_hours():
    async def scenario():
        workers, clock = Workers(salts_topic()), Clock(NOON)
        salts = workers.start(clock)
        await salts.prepare([utc_day(NOON)])
        day1 = hash_of(salts, NOON)
        clock.now = NOON + DAY
        await salts.prepare([utc_day(NOON + DAY)])
        day2, day1_again = hash_of(salts, NOON + DAY), hash_of(salts, NOON)
        clock.now = NOON + 2 * DAY  # day 1 began 60 h ago
        await salts.prepare([utc_day(NOON + 2 * DAY)])
        day1_after_48h = hash_of(salts, NOON)
        # A worker starting now finds day 1's record still on the topic (retention has
        # not run in this test) and still refuses it: too old.
        fresh = workers.start(clock)
        await fresh.prepare([utc_day(NOON), utc_day(NOON + DAY)])
        seen_by_fresh = hash_of(fresh, NOON), hash_of(fresh, NOON + DAY)
        await workers.stop()
        return day1, day2, day1_again, day1_after_48h, seen_by_fresh

    day1, day2, day1_again, day1_after_48h, seen_by_fresh = asyncio.run(scenario())
    assert day1 != day2 and 0 not in (day1, day2)  # a visitor cannot be followed across days
    assert day1_again == day1  # yesterday's late beacons still hash like yesterday's
    assert day1_after_48h == 0
    assert seen_by_fresh == (0, day2)  # yesterday's salt read from the topic, for a backlog


def test_a_salt_deleted_from_the_topic_cannot_be_reproduced():
    async def scenario():
        topic, clock = salts_topic(), Clock(NOON)
        workers = Workers(topic)
        salts = workers.start(clock)
        await salts.prepare([utc_day(NOON)])
        before = hash_of(salts, NOON)
        await workers.stop()
        delete_all_records(topic)  # what retention does to the salt's segment
        clock.now = NOON + DAY  # the next day, a new worker with yesterday's backlog
        backlog = Workers(topic)
        late = backlog.start(clock)
        await late.prepare([utc_day(NOON)])
        after_next_day = hash_of(late, NOON)
        clock.now = NOON  # even on the same day, a worker that lost the salt gets a new one
        again = backlog.start(clock)
        await again.prepare([utc_day(NOON)])
        same_day = hash_of(again, NOON)
        await backlog.stop()
        return before, after_next_day, same_day

    before, after_next_day, same_day = asyncio.run(scenario())
    assert before != 0
    assert after_next_day == 0  # the backlog's beacons get no visitor hash, and are counted
    assert same_day not in (0, before)


def test_a_tombstone_makes_every_worker_forget_the_salt():
    async def scenario():
        workers, clock = Workers(salts_topic()), Clock(NOON)
        one, two = workers.start(clock), workers.start(clock)
        await asyncio.gather(one.prepare([utc_day(NOON)]), two.prepare([utc_day(NOON)]))
        await one.destroy(utc_day(NOON))
        deadline = time.monotonic() + 10
        while (one.salt(utc_day(NOON)) or two.salt(utc_day(NOON))) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await two.prepare([utc_day(NOON)])  # the day is not given a new salt
        hashes = hash_of(one, NOON), hash_of(two, NOON)
        await workers.stop()
        return hashes

    assert asyncio.run(scenario()) == (0, 0)


def test_retention_physically_deletes_the_salt_record():
    """The topic's own mechanism, with retention.ms of 1 s instead of 22 h; the local
    broker checks retention every 5 s (deploy/kafka/local.sh)."""
    topic = salts_topic({**SALT_TOPIC_CONFIG, "retention.ms": "1000"})

    async def scenario():
        workers, clock = Workers(topic), Clock(time.time())
        salts = workers.start(clock)
        await salts.prepare([utc_day(clock.now)])
        await workers.stop()

    asyncio.run(scenario())
    assert records_in(topic) == 1
    deadline = time.monotonic() + 30
    while records_in(topic) and time.monotonic() < deadline:
        time.sleep(1)
    assert records_in(topic) == 0, "the salt record outlived its retention"


def records_in(topic: str) -> int:
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        partition = TopicPartition(topic, 0)
        return consumer.end_offsets([partition])[partition] - consumer.beginning_offsets([partition])[partition]
    finally:
        consumer.close()


def delete_all_records(topic: str) -> None:
    from kafka import TopicPartition

    admin = admin_client(BOOTSTRAP)
    try:
        admin.delete_records({TopicPartition(topic, 0): -1})  # -1: up to the high watermark
    finally:
        admin.close()
    assert records_in(topic) == 0


def test_the_current_salt_is_republished_hourly_and_a_lost_race_ends_with_the_winner():
    topic = salts_topic()
    future_noon = (int(time.time()) // DAY + 10) * DAY + DAY // 2  # the broker's timestamps are older

    async def scenario():
        workers, clock = Workers(topic), Clock(future_noon)
        salts = workers.start(clock)
        await salts.prepare([utc_day(clock.now)])
        winner = salts.salt(utc_day(clock.now))
        await salts.republish_stale()  # the newest copy is "hours" old: a copy
        await salts.republish_stale()  # one copy per interval
        foreign = KafkaProducer(bootstrap_servers=BOOTSTRAP)
        foreign.send(topic, key=str(utc_day(clock.now)).encode(), value=b"x" * 16).get(timeout=30)  # a late loser
        foreign.close()
        await wait_until(lambda: salts._newest_copy[utc_day(clock.now)] == 0.0)
        await salts.republish_stale()  # the winner goes after the loser
        clock.now += DAY
        await salts.republish_stale()  # a day that is over is never written again
        await workers.stop()
        return winner

    winner = asyncio.run(scenario())
    assert values_in(topic) == [winner, winner, b"x" * 16, winner]


async def wait_until(done, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def values_in(topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


def test_an_idle_worker_forgets_a_salt_48_hours_after_its_day_began():
    async def scenario():
        clock, topic = Clock(NOON), salts_topic()
        salts = KafkaSalts(BOOTSTRAP, topic, clock=clock, wait_seconds=20, check_every=0.1)
        task = asyncio.create_task(salts.follow())
        await salts.prepare([utc_day(NOON)])
        held = salts.salt(utc_day(NOON)) is not None
        clock.now += 2 * DAY  # no beacon, no prepare(): only the follower's own check runs
        await asyncio.sleep(0.5)
        forgotten = salts.salt(utc_day(NOON)) is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return held, forgotten

    assert asyncio.run(scenario()) == (True, True)
