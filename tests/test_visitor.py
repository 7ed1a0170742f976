"""Cookieless visitor hashes: stable within a day, unlinkable across days, and
impossible to recompute once the salt is destroyed."""
from __future__ import annotations

import calendar

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
    assert visitor_id(one, DAY1, "example.com", "203.0.113.5", UA) == visitor_id(two, DAY1, "example.com", "203.0.113.5", UA)


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
