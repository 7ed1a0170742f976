"""Cookieless visitor hashes: stable within a day, unlinkable across days, and
impossible to recompute once the salt is destroyed."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

from streams.visitor import DailySalts, utc_day, visitor_id

UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"
DAY1 = calendar.timegm((2026, 3, 1, 10, 0, 0))
DAY = 86400


def test_same_visitor_same_day_same_hash(tmp_path):
    salts = DailySalts(tmp_path)
    a = visitor_id(salts, DAY1, "example.com", "203.0.113.5", UA)
    assert a == visitor_id(salts, DAY1 + 3600, "example.com", "203.0.113.5", UA)
    assert a != visitor_id(salts, DAY1, "example.com", "203.0.113.6", UA)
    assert a != visitor_id(salts, DAY1, "example.com", "203.0.113.5", UA + " Edge")
    assert a != visitor_id(salts, DAY1, "other.example", "203.0.113.5", UA)  # not linkable across sites
    assert 0 < a < 2**64


def test_processes_share_the_day_salt_through_the_directory(tmp_path):
    one, two = DailySalts(tmp_path), DailySalts(tmp_path)
    assert visitor_id(one, DAY1, "example.com", "203.0.113.5", UA) == visitor_id(
        two, DAY1, "example.com", "203.0.113.5", UA
    )


def test_yesterdays_hash_differs_and_old_salts_are_destroyed(tmp_path):
    salts = DailySalts(tmp_path)
    day1 = visitor_id(salts, DAY1, "example.com", "203.0.113.5", UA)
    day2 = visitor_id(salts, DAY1 + DAY, "example.com", "203.0.113.5", UA)
    assert day1 != day2  # a visitor cannot be followed from one day to the next
    assert sorted(p.name for p in tmp_path.glob("salt-*")) == [f"salt-{utc_day(DAY1)}", f"salt-{utc_day(DAY1 + DAY)}"]

    visitor_id(salts, DAY1 + 2 * DAY, "example.com", "203.0.113.5", UA)  # day 3: day 1's salt goes
    assert f"salt-{utc_day(DAY1)}" not in {p.name for p in tmp_path.glob("salt-*")}
    # Nothing left can reproduce day 1's hash: a new salt for that day is a new random one.
    assert visitor_id(DailySalts(tmp_path), DAY1, "example.com", "203.0.113.5", UA) != day1


# --- per local day: the site's time zone ----------------------------------------------------

TORONTO = "America/Toronto"  # UTC−5 in December
BEFORE_UTC_MIDNIGHT = calendar.timegm((2026, 12, 1, 23, 50, 0))
AFTER_UTC_MIDNIGHT = BEFORE_UTC_MIDNIGHT + 20 * 60


def test_a_visitor_keeps_one_hash_through_the_sites_own_day(tmp_path):
    salts = DailySalts(tmp_path)
    at = [
        visitor_id(salts, ts, "example.com", "203.0.113.5", UA, TORONTO)
        for ts in (BEFORE_UTC_MIDNIGHT, AFTER_UTC_MIDNIGHT)
    ]
    assert at[0] == at[1] != 0  # 18:50 and 19:10 in Toronto: one local day
    in_utc = [
        visitor_id(salts, ts, "example.com", "203.0.113.5", UA) for ts in (BEFORE_UTC_MIDNIGHT, AFTER_UTC_MIDNIGHT)
    ]
    assert in_utc[0] != in_utc[1]  # two UTC days
    next_local_day = visitor_id(
        salts, calendar.timegm((2026, 12, 2, 5, 10, 0)), "example.com", "203.0.113.5", UA, TORONTO
    )
    assert next_local_day != at[0]  # 00:10 in Toronto: another day, another hash


def _local_days(zone: str, first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def test_every_zones_local_day_ends_before_the_salt_that_hashes_it_is_deleted():
    """The salt of UTC day D hashes the local days that start in D, and is deleted at
    the start of D + 2 (48 h after it was made, at the latest): every local day of
    every zone of the tz database, 2026–2028, ends by then (and starts after D began)."""
    late = []
    for zone in sorted(available_timezones()):
        tz = ZoneInfo(zone)
        for day in _local_days(zone, date(2026, 1, 1), date(2028, 12, 31)):
            start = datetime.combine(day, datetime.min.time(), tz).astimezone(timezone.utc)
            end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(timezone.utc)
            salt_made = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
            if end - salt_made > timedelta(hours=48):
                late.append((zone, day, end - salt_made))
    assert late == []
