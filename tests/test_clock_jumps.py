"""The wall clock jumps an hour forward and back (an NTP step, a VM resumed): salts,
TTL and visits stay right.

``common.clock`` is the seam: ``clock.use(source)`` makes every ``clock.now()`` of
this process read ``source`` (and ``clock.use_monotonic`` its ``monotonic()``, which
the visit builder checks the wall clock against). Its readers are used here with
their default clocks (``DailySalts``, ``VisitBuilder``, the collector's
``received_at``), so these tests check what the product reads, not a clock handed in
by the test. All in-process: a subprocess would not see the replaced clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from common import clock
from rollups.visit_builder import GAP, LATENESS, VisitBuilder, watermark
from storage.migrations import MAX_RETENTION_DAYS
from storage.sink import encode_rows
from streams.geo import GeoLookup
from streams.privacy_filter import FilterEnv, filter_batch
from streams.visitor import DailySalts, day_start, visitor_id
from tests.test_collector_paths import make_app, scope, through_asgi
from tests.test_visits import PERSON, expected_visits, stored_visits
from tests.traffic import Event, clean, cut_visits, insert

HOUR = 3600.0
DAY = 86400.0
SITE, IP, UA = "example.com", "203.0.113.9", "Mozilla/5.0"
# A fixed day, far from today: what the tests see depends on the clock they set only.
NOON = day_start(20260310) + 12 * HOUR


class Wall:
    """The clocks the test sets: the wall clock (``at``), which time and jumps move,
    and the monotonic one, which only time moves. Setting ``at`` is a jump."""

    def __init__(self, at: float):
        self.at = at
        self.elapsed = 0.0

    def __call__(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.elapsed

    def passes(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.at += seconds
        self.elapsed += seconds

    def jumps(self, seconds: float) -> None:
        """The wall clock steps; no time passes."""
        self.at += seconds


@pytest.fixture
def wall() -> Iterator[Wall]:
    source = Wall(NOON)
    previous, previous_monotonic = clock.use(source), clock.use_monotonic(source.monotonic)
    try:
        yield source
    finally:
        clock.use(previous)
        clock.use_monotonic(previous_monotonic)


def _hash_with(salt_file: Path) -> int:
    """What visitor_id must be with this salt (streams.visitor's definition)."""
    digest = hashlib.blake2b(f"{SITE}\0{IP}\0{UA}".encode(), key=salt_file.read_bytes(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _beacon_hash(salts: DailySalts) -> int:
    """A beacon's hash, stamped as the collector stamps it: now, by the wall clock."""
    return visitor_id(salts, clock.now(), SITE, IP, UA)


# --- the visitor hash -----------------------------------------------------------------


def test_an_hour_forward_and_back_within_a_day_keeps_the_visitor(wall, tmp_path):
    salts = DailySalts(tmp_path)  # the default clock: common.clock
    salts.keep_current()
    before = _beacon_hash(salts)
    wall.at = NOON + HOUR
    salts.keep_current()  # a timer round during the jump
    during = _beacon_hash(salts)
    wall.at = NOON + 60
    salts.keep_current()
    after = _beacon_hash(salts)
    assert before == during == after == _hash_with(tmp_path / "salt-20260310")
    assert salts.days_on_disk() == [20260310]


def test_a_jump_across_midnight_hashes_with_the_day_of_the_beacons_time(wall, tmp_path):
    wall.at = day_start(20260311) - 30 * 60  # 23:30
    salts = DailySalts(tmp_path)
    salts.keep_current()
    evening = _beacon_hash(salts)
    wall.at += HOUR  # 00:30 of the next day
    salts.keep_current()
    next_day = _beacon_hash(salts)
    wall.at -= HOUR - 60  # back to 23:31
    salts.keep_current()
    back = _beacon_hash(salts)
    assert evening == back == _hash_with(tmp_path / "salt-20260310")
    assert next_day == _hash_with(tmp_path / "salt-20260311") and next_day != evening
    assert salts.days_on_disk() == [20260310, 20260311]  # the jump back deleted nothing it still needs


def test_jumping_back_does_not_make_a_deleted_salt_again(wall, tmp_path):
    salts = DailySalts(tmp_path)
    salts.keep_current()  # the 10th's salt
    old = _beacon_hash(salts)
    wall.at = day_start(20260312) - 30 * 60  # the 11th, 23:30
    salts.keep_current()
    wall.at += HOUR  # the 12th, 00:30: the 10th is over by more than a day
    salts.keep_current()
    assert salts.days_on_disk() == [20260311, 20260312]
    wall.at -= HOUR - 60  # back to the 11th
    salts.keep_current()
    # A beacon of the 10th (a late one, or a clock set back further) gets no hash, and
    # no salt of the 10th comes back, in memory or on disk.
    assert visitor_id(salts, NOON, SITE, IP, UA) == 0 != old
    assert salts.salt(20260310) is None
    assert salts.days_on_disk() == [20260311, 20260312]
    # A fresh process on the same directory is no more forgetful.
    assert DailySalts(tmp_path).salt(20260310) is None
    assert salts.days_on_disk() == [20260311, 20260312]


# --- TTL: expiry follows the event's time column ---------------------------------------------


def _ttl(store, table: str) -> tuple[str, int]:
    """(column, days) of the table's TTL, as ClickHouse has it."""
    ((ddl,),) = store.rows(
        "SELECT create_table_query FROM system.tables WHERE database = 'beacon' AND name = {t:String}", {"t": table}
    )
    match = re.search(r"\bTTL toDateTime\((\w+)\) \+ toIntervalDay\((\d+)\)", ddl)
    assert match, ddl
    return match.group(1), int(match.group(2))


def test_an_event_stamped_during_a_jump_keeps_its_time_and_expires_from_it(wall, store, tmp_path):
    clean(store)
    wall.at = NOON + HOUR  # the jump: the collector stamps what the clock says
    app, kept = make_app()
    body = json.dumps({"site": SITE, "url": "https://example.com/jumped"}).encode()
    status, _, _ = through_asgi(app, scope(body), body)
    assert status == 202 and kept.events[0].context.received_at == NOON + HOUR
    wall.at = NOON  # and back, before the row is stored
    events, dropped, _ = filter_batch(kept.events, FilterEnv(GeoLookup(None), salts=DailySalts(tmp_path)))
    assert not dropped
    store.insert_json_rows("beacon.events", encode_rows(events))
    try:
        column, days = _ttl(store, "events")
        assert column == "ts" and days <= MAX_RETENTION_DAYS
        # ClickHouse computes the expiry from the stored column: the jumped time + N days,
        # whatever the clock said when the row was written or is merged.
        ((stored_ms, expires),) = store.rows(
            f"SELECT toUnixTimestamp64Milli(ts), toUnixTimestamp(toDateTime({column}) + toIntervalDay({days})) "
            "FROM beacon.events WHERE path = '/jumped'"
        )
        assert stored_ms == int((NOON + HOUR) * 1000)
        assert expires == NOON + HOUR + days * DAY
    finally:
        clean(store)


# --- the visit builder --------------------------------------------------------------------

HOLD = GAP + LATENESS  # a visit closes this long after its last event; a forward step is held as long


def _at(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, timezone.utc)


def _windows(store) -> list[tuple]:
    return sorted(store.rows("SELECT since, until FROM beacon.visit_builds"))


def _assert_no_overlap(windows: list[tuple]) -> None:
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:])), windows


@pytest.fixture
def store_(store):
    clean(store)
    yield store
    clean(store)


@pytest.fixture
def builder(store_) -> VisitBuilder:
    """One builder for the whole test, with its default clocks, as the server keeps
    one across its rounds."""
    return VisitBuilder(store_, interval=3600)


def _warnings(caplog) -> list[tuple[str, int]]:
    """The builder's warnings: (message, step in seconds)."""
    return [
        (r.getMessage(), r.step_s) for r in caplog.records if r.name == "beacon.visits" and r.levelno == logging.WARNING
    ]


def _visit(visitor: int, *moments: float) -> list[Event]:
    return [Event("a.test", visitor, _at(m), path=f"/v{visitor}/{i}", **PERSON) for i, m in enumerate(moments)]


def test_visits_closed_before_the_jump_are_written_once_through_forward_and_back(wall, store_, builder):
    """Visits already over when the clock jumps: each written once, none again after
    the clock comes back, and no window is built twice."""
    t0 = NOON
    events = (
        _visit(1, t0 - 3 * HOUR, t0 - 3 * HOUR + 600) + _visit(2, t0 - 2 * HOUR) + _visit(3, t0 - HOUR - 300, t0 - HOUR)
    )
    insert(store_, events)
    builder.start()  # the first round as the server runs it: start builds before it first waits,
    builder.stop()  # and stop ends that wait
    first = stored_visits(store_)
    assert first == expected_visits(cut_visits(events))  # all three were closed at t0
    wall.jumps(HOUR)
    builder.build_once()
    assert watermark(store_) == _at(t0) - HOLD  # the jump moved nothing
    wall.jumps(-HOUR)
    wall.passes(60)
    builder.build_once()
    wall.passes(3 * HOUR - 60)  # time goes on: the builder passes the watermark of t0
    builder.build_once()
    assert stored_visits(store_) == first
    windows = _windows(store_)
    _assert_no_overlap(windows)
    assert windows[-1][1] == _at(t0 + 3 * HOUR).replace(tzinfo=None) - HOLD


def test_events_that_arrive_across_the_jump_each_join_their_one_visit(wall, store_, builder, caplog):
    """A visit still open when the clock jumps an hour forward: the beacons after the
    jump back (stamped with the real time, within the 30-minute gap) belong to it.
    What tests/test_visits.py expects of these events: one visit of three pageviews."""
    caplog.set_level(logging.INFO, logger="beacon.visits")
    t0 = NOON
    first = _visit(1, t0 - 20 * 60, t0 - 15 * 60)  # open at t0: it closes at t0 + 25 min
    insert(store_, first)
    builder.build_once()
    assert stored_visits(store_) == []  # not closed yet
    wall.jumps(HOUR)
    builder.build_once()
    assert stored_visits(store_) == [] and watermark(store_) == _at(t0) - HOLD  # nor by the jump
    wall.jumps(-HOUR)
    wall.passes(5 * 60)  # back; the visitor goes on five minutes later
    later = [Event("a.test", 1, _at(wall.at), path="/v1/2", **PERSON)]
    insert(store_, later)
    for minutes in range(7, 240, 7):  # the builder's rounds for the next four hours
        wall.passes(t0 + minutes * 60 - wall.at)
        builder.build_once()
    built = stored_visits(store_)
    assert len(built) == len(set(built))
    assert built == expected_visits(cut_visits(first + later))
    assert _warnings(caplog) == [("wall clock stepped forward; closing visits by the elapsed time", HOUR)]


def test_a_forward_step_that_lasts_is_accepted_after_the_hold(wall, store_, builder, caplog):
    """The clock was an hour behind and is set right while a visit is open: for 30
    minutes plus the lateness the builder closes visits by the time elapsed, then by
    the wall clock; every visit is written once."""
    caplog.set_level(logging.INFO, logger="beacon.visits")
    t0 = NOON
    before = _visit(1, t0 - 20 * 60, t0 - 15 * 60)  # stamped by the clock an hour behind; open at the step
    after = _visit(2, t0 + HOUR + 60, t0 + HOUR + 10 * 60)  # stamped by the clock set right
    insert(store_, before)
    builder.build_once()
    wall.jumps(HOUR)
    builder.build_once()
    assert watermark(store_) == _at(t0) - HOLD
    held = int(HOLD.total_seconds() // 60)
    for minute in range(1, 61):  # a round a minute
        wall.passes(60)
        if minute == 10:
            insert(store_, after)
        builder.build_once()
        closed_by = t0 + minute * 60 if minute <= held else wall.at  # the elapsed time, then the wall
        assert watermark(store_) == _at(closed_by) - HOLD, minute
        # visit 1 closes 25 minutes after the step (by the elapsed time), visit 2 ten
        # minutes after the wall is accepted
        assert len(stored_visits(store_)) == (minute > 25) + (minute > 50), minute
    built = stored_visits(store_)
    assert len(built) == len(set(built))
    assert built == expected_visits(cut_visits(before + after))
    _assert_no_overlap(_windows(store_))
    assert _warnings(caplog) == [
        ("wall clock stepped forward; closing visits by the elapsed time", HOUR),
        ("wall clock step accepted", HOUR),
    ]


def test_a_backward_jump_closes_and_rewrites_nothing(wall, store_, builder, caplog):
    """The clock jumps an hour back: the watermark stays where it was, and no window
    is built, until the wall passes it again; then visits close as before."""
    caplog.set_level(logging.INFO, logger="beacon.visits")
    t0 = NOON
    done = _visit(1, t0 - 3 * HOUR, t0 - 3 * HOUR + 600)
    still_open = _visit(2, t0 - 20 * 60, t0 - 15 * 60)
    insert(store_, done + still_open)
    builder.build_once()
    assert stored_visits(store_) == expected_visits(cut_visits(done))
    mark, windows = watermark(store_), _windows(store_)
    assert mark == _at(t0) - HOLD
    wall.jumps(-HOUR)
    for minute in range(1, 91):  # a round a minute: the wall reads t0 again at minute 60
        wall.passes(60)
        builder.build_once()
        if wall.at <= t0:
            assert (watermark(store_), _windows(store_)) == (mark, windows), minute
        else:
            assert watermark(store_) == _at(wall.at) - HOLD, minute
        assert len(stored_visits(store_)) == 1 + (wall.at > t0 + 25 * 60), minute  # visit 2 closes at t0 + 25 min
    built = stored_visits(store_)
    assert len(built) == len(set(built))
    assert built == expected_visits(cut_visits(done + still_open))
    _assert_no_overlap(_windows(store_))
    assert _warnings(caplog) == []  # a step back is no step to hold
