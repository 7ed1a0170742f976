"""The timeseries: metrics per hour, day or month, every bucket of the period listed
(``/api/v1/stats/timeseries``). Buckets are the site's local hours, days and months,
named as Plausible names them: ``YYYY-MM-DD HH:00:00``, ``YYYY-MM-DD`` (a day, or a
week by its Monday), ``YYYY-MM-01`` (an hour repeated when the clock goes back carries its UTC offset)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from queries.aggregate import without_goal_filters
from queries.days import UTC, local_date, zone
from queries.engine import run
from queries.imported import settled
from queries.metrics import values
from queries.model import INTERVALS, QueryError, StatsQuery
from queries.parts import SUMS
from queries.planner import Plan, make_plan
from storage.clickhouse import Store


def timeseries(store: Store, q: StatsQuery) -> list[dict]:
    if q.interval not in INTERVALS:
        raise QueryError(f"interval must be one of {', '.join(INTERVALS)}")
    plan = make_plan(q)
    found = {row.bucket: row.sums for row in run(store, plan)}
    bases = _base_visitors(store, plan) if plan.needs.asks_base else {}
    empty = dict.fromkeys(SUMS, 0)
    page_scoped, start, end = plan.needs.page_scoped, plan.needs.query.start, plan.needs.query.end
    return [
        {"date": label, **values(q.metrics, found.get(key, empty), page_scoped, bases.get(key), "timeseries")}
        for key, label in slots(start, end, q.interval, q.timezone)
    ]


def _base_visitors(store: Store, plan: Plan) -> dict[str, int]:
    """conversion_rate's base per bucket."""
    q = plan.needs.query
    base = make_plan(replace(without_goal_filters(settled(store, plan)), interval=q.interval))
    return {row.bucket: row.sums["visitors"] for row in run(store, base)}


def buckets(start: datetime, end: datetime, interval: str, zone_name: str = UTC) -> list[str]:
    """The labels of every bucket that [start, end) touches."""
    return [label for _, label in slots(start, end, interval, zone_name)]


def slots(start: datetime, end: datetime, interval: str, zone_name: str) -> list[tuple[str, str]]:
    """Every bucket that [start, end) touches, in order: its key (as queries.parts.bucket
    makes it in SQL) and its label."""
    if interval == "hour":
        return _hours(start, end, zone_name)
    first, last = local_date(start, zone_name), local_date(end - timedelta(milliseconds=1), zone_name)
    if interval == "date":
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        return [(d.isoformat(), d.isoformat()) for d in days]
    if interval == "week":
        return _weeks(first, last)
    months, at = [], first.replace(day=1)
    while at <= last:
        months.append((at.strftime("%Y-%m-01"), at.strftime("%Y-%m-01")))
        if at.year == 9999 and at.month == 12:  # the calendar's last month
            break
        at = (at.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


def _weeks(first: date, last: date) -> list[tuple[str, str]]:
    """Weeks from Monday; the first is labelled with the period's first day, as
    Plausible labels it, when that is not a Monday."""
    mondays, at = [], first - timedelta(days=first.weekday())
    while at <= last:
        mondays.append(at)
        if at > date.max - timedelta(days=7):
            break
        at += timedelta(days=7)
    return [(m.isoformat(), max(m, first).isoformat()) for m in mondays]


QUARTER_HOUR = timedelta(minutes=15)  # every UTC offset, and every change of one, is a whole quarter hour


def _hours(start: datetime, end: datetime, zone_name: str) -> list[tuple[str, str]]:
    """The local hours of [start, end): a DST day has 23 or 25. An hour the clock goes
    through twice is two buckets, labelled with their UTC offsets to tell them apart
    (``2026-11-01 01:00:00-04:00``, ``…-05:00``); every other hour is labelled as
    Plausible labels it (``2026-11-01 02:00:00``)."""
    tz = zone(zone_name)
    at = start - timedelta(seconds=start.timestamp() % QUARTER_HOUR.total_seconds())
    seen: list[tuple[str, int]] = []
    while at < end:
        local = at.astimezone(tz)
        key = (local.strftime("%Y-%m-%d %H:00:00"), int(local.utcoffset().total_seconds()))
        if not seen or seen[-1] != key:
            seen.append(key)
        at += QUARTER_HOUR
    walls = [wall for wall, _ in seen]
    return [(f"{wall}|{offset}", wall + _offset(offset) if walls.count(wall) > 1 else wall) for wall, offset in seen]


def _offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
