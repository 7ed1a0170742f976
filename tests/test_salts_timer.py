"""Embedded salts are destroyed on time without a beacon: at start-up and on a timer
(streams.visitor.DailySalts.start), under a clock the test moves."""

from __future__ import annotations

import calendar
import re
import threading
import time

from common import metrics
from streams.visitor import DailySalts, utc_day, visitor_id

DAY = 86400
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"


class Clock:
    def __init__(self, now: float):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def move_to(self, now: float) -> None:
        with self._lock:
            self.now = now


def _days(directory) -> list[int]:
    return sorted(int(p.name.removeprefix("salt-")) for p in directory.glob("salt-*"))


def _wait(done, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _gauge(name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", metrics.exposition().decode(), re.M).group(1))


def test_start_deletes_expired_salts_and_makes_todays(tmp_path):
    """A server restarted after days away: the salts it left are gone at once."""
    monday = calendar.timegm((2026, 3, 2, 9, 0, 0))
    left_behind = DailySalts(tmp_path, clock=Clock(monday))
    hashes = {day: visitor_id(left_behind, monday + day * DAY, "example.com", "203.0.113.5", UA) for day in (0, 1)}
    assert _days(tmp_path) == [utc_day(monday), utc_day(monday + DAY)]

    thursday = monday + 3 * DAY + 3600
    salts = DailySalts(tmp_path, clock=Clock(thursday), check_every=3600)
    salts.start()
    try:
        assert _days(tmp_path) == [utc_day(thursday)]
        assert salts.has_today()
        assert _gauge("beacon_visitor_salt_oldest_day_timestamp_seconds") == calendar.timegm((2026, 3, 5, 0, 0, 0))
    finally:
        salts.stop()
    # Nothing left can reproduce Monday's or Tuesday's hashes: their salts are gone for
    # good (not made again, which `!= hashes[…]` alone would also let pass).
    assert hashes[0] != 0 and hashes[1] != 0
    for day in (monday, monday + DAY):
        assert salts.salt(utc_day(day)) is None
        assert visitor_id(salts, day, "example.com", "203.0.113.5", UA) == 0
    assert _days(tmp_path) == [utc_day(thursday)]


def test_the_timer_deletes_a_salt_when_its_day_is_over_by_a_day_with_no_beacon(tmp_path):
    clock = Clock(calendar.timegm((2026, 3, 31, 23, 0, 0)))  # a month's last day: the next is 20260401
    salts = DailySalts(tmp_path, clock=clock, check_every=0.02)
    salts.start()
    try:
        march_31 = utc_day(clock())
        hashed_on_march_31 = visitor_id(salts, clock(), "example.com", "203.0.113.5", UA)
        assert _days(tmp_path) == [march_31]

        clock.move_to(calendar.timegm((2026, 4, 1, 0, 0, 1)))  # a new day: its salt is made, yesterday's kept
        _wait(lambda: _days(tmp_path) == [march_31, 20260401])
        assert salts.has_today()

        clock.move_to(calendar.timegm((2026, 4, 1, 23, 59, 59)))  # 47 h 59 min after March 31 began
        salts.keep_current()  # a round of the timer, now: nothing may be deleted yet
        assert _days(tmp_path) == [march_31, 20260401]

        clock.move_to(calendar.timegm((2026, 4, 2, 0, 0, 0)))  # 48 h: March 31's salt goes, with no beacon
        _wait(lambda: _days(tmp_path) == [20260401, 20260402])
        # Gone from memory too: asked for March 31 again, there is no salt (none is made
        # again), so no hash: 0, not another number.
        assert hashed_on_march_31 != 0
        assert salts.salt(march_31) is None
        assert visitor_id(salts, calendar.timegm((2026, 3, 31, 23, 0, 0)), "example.com", "203.0.113.5", UA) == 0
        assert _days(tmp_path) == [20260401, 20260402]
        assert _gauge("beacon_visitor_salt_newest_day_timestamp_seconds") == calendar.timegm((2026, 4, 2, 0, 0, 0))
        assert _gauge("beacon_visitor_salt_oldest_day_timestamp_seconds") == calendar.timegm((2026, 4, 1, 0, 0, 0))
    finally:
        salts.stop()


def test_stop_ends_the_timer(tmp_path):
    salts = DailySalts(tmp_path, clock=Clock(calendar.timegm((2026, 3, 2, 9, 0, 0))), check_every=3600)
    salts.start()
    assert "salts-timer" in {t.name for t in threading.enumerate()}
    salts.stop()
    assert "salts-timer" not in {t.name for t in threading.enumerate()}


def test_a_clock_set_back_days_never_makes_a_deleted_salt_again(tmp_path):
    """An NTP step or a fixed hardware clock sets the time back three days: the salts
    of those days were deleted, and a new one for them would give the same visitor a
    second, different hash for a day already counted. Such beacons get no hash (0);
    the days still kept (the newest and the one before) keep theirs."""
    thursday = calendar.timegm((2026, 3, 5, 9, 0, 0))
    clock = Clock(thursday)
    salts = DailySalts(tmp_path, clock=clock, check_every=3600)
    today = visitor_id(salts, thursday, "example.com", "203.0.113.5", UA)
    yesterday = visitor_id(salts, thursday - DAY, "example.com", "203.0.113.5", UA)
    assert today and yesterday and today != yesterday

    clock.move_to(thursday - 3 * DAY)
    salts.keep_current()
    assert visitor_id(salts, clock(), "example.com", "203.0.113.5", UA) == 0
    assert _days(tmp_path) == [utc_day(thursday - DAY), utc_day(thursday)]

    restarted = DailySalts(tmp_path, clock=clock, check_every=3600)  # the newest day is read from disk
    assert restarted.salt(utc_day(thursday - 3 * DAY)) is None
    assert visitor_id(restarted, thursday, "example.com", "203.0.113.5", UA) == today
