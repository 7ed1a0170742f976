"""Plausible Stats API v1 parameters → a ``queries.model.StatsQuery``, or the 400 to answer.

Dates are days of the site's time zone (``beacon sites add --timezone``; UTC by
default), and "today" is today there. Periods, as Plausible computes them
(../docs/analytics.md):

    day      the day of ``date``                        (timeseries: by hour)
    7d, 30d  the 7 or 30 days before ``date``, ``date`` itself excluded
    month    the calendar month of ``date``
    6mo      the 1st of the month 5 months before, to the end of ``date``'s month
    12mo     the same, 11 months before
    custom   ``date=YYYY-MM-DD,YYYY-MM-DD``, both days included

Filters: ``property==value``, ``!=``, ``~`` (contains); ``a|b`` for alternatives
(``\\|`` is a literal bar); ``;`` between filters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from queries.days import UTC, start_of
from queries.metrics import METRICS
from queries.model import V1_OPERATORS, Filter, StatsQuery
from queries.properties import is_known

PERIODS = ("day", "7d", "30d", "month", "6mo", "12mo", "custom")
INTERVALS = ("date", "day", "month")
MAX_LIMIT = 1000
MAX_CONTAINS_VALUES = 255  # needles of one ClickHouse multiSearchAny


class BadParameter(ValueError):
    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter

    def body(self) -> dict:
        return {"error": str(self), "parameter": self.parameter}


@dataclass(frozen=True)
class Period:
    name: str
    first: date  # inclusive
    last: date  # inclusive
    zone: str = UTC  # the site's: its days start at its midnight

    @property
    def start(self) -> datetime:
        return start_of(self.first, self.zone)

    @property
    def end(self) -> datetime:
        return start_of(self.last + timedelta(days=1), self.zone)

    def previous(self) -> Period:
        """The period of the same length just before (``compare=previous_period``)."""
        days = (self.last - self.first).days + 1
        return Period(self.name, self.first - timedelta(days=days), self.first - timedelta(days=1), self.zone)


def site_id(params: dict[str, str]) -> str:
    site = params.get("site_id", "").strip().lower()
    if not site:
        raise BadParameter("site_id", "site_id is required: the site's domain, e.g. site_id=example.com")
    return site


def period(params: dict[str, str], today: date, zone: str = UTC) -> Period:
    name = params.get("period", "30d")
    if name not in PERIODS:
        raise BadParameter("period", f"period must be one of {', '.join(PERIODS)}")
    try:
        return _within_calendar(_period(name, params, today, zone))
    except OverflowError:  # a day before 0001-01-01 or after 9999-12-31
        raise _out_of_range() from None


def _period(name: str, params: dict[str, str], today: date, zone: str) -> Period:
    if name == "custom":
        first, _, last = params.get("date", "").partition(",")
        first_day, last_day = _day(first.strip()), _day(last.strip())
        if last_day < first_day:
            raise BadParameter("date", "a custom range must end on or after its first day")
        if (last_day - first_day).days > 3660:
            raise BadParameter("date", "a custom range spans at most ten years")
        return Period(name, first_day, last_day, zone)
    anchor = _day(params["date"]) if "date" in params else today
    if name == "day":
        return Period(name, anchor, anchor, zone)
    if name in ("7d", "30d"):
        days = int(name[:-1])
        return Period(name, anchor - timedelta(days=days), anchor - timedelta(days=1), zone)
    months = {"month": 0, "6mo": 5, "12mo": 11}[name]
    first = _add_months(anchor.replace(day=1), -months)
    last = _add_months(anchor.replace(day=1), 1) - timedelta(days=1)
    return Period(name, first, last, zone)


def metrics(params: dict[str, str]) -> tuple[str, ...]:
    names = tuple(m.strip() for m in params.get("metrics", "visitors").split(","))
    for name in names:
        if name not in METRICS:
            raise BadParameter("metrics", f"the metric '{name[:50]}' is not recognized; use {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise BadParameter("metrics", "a metric is named twice")
    return names


def breakdown_property(params: dict[str, str]) -> str:
    prop = params.get("property", "")
    if not prop:
        raise BadParameter("property", "property is required, e.g. property=event:page")
    if not is_known(prop):
        raise BadParameter("property", f"unknown property '{prop[:80]}'")
    return prop


def filters(params: dict[str, str]) -> tuple[Filter, ...]:
    text = params.get("filters", "").strip()
    if not text:
        return ()
    return tuple(_filter(part) for part in _split_unescaped(text, ";") if part.strip())


def funnel_name(params: dict[str, str]) -> str:
    name = params.get("funnel", "").strip()
    if not name:
        raise BadParameter("funnel", "funnel is required: the name of one of the site's funnels (beacon funnels add)")
    return name


def interval(params: dict[str, str], chosen: Period) -> str:
    """The timeseries bucket: ``hour`` for a day, else ``date`` or ``month``."""
    name = params.get("interval")
    if name is None:
        return {"day": "hour", "6mo": "month", "12mo": "month"}.get(chosen.name, "date")
    if name not in INTERVALS:
        raise BadParameter("interval", "interval must be date or month")
    if chosen.name == "day" and name != "month":
        return "hour"
    return "date" if name == "day" else name


def paging(params: dict[str, str]) -> tuple[int, int]:
    limit = _integer(params, "limit", 100)
    page = _integer(params, "page", 1)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter("limit", f"limit must be between 1 and {MAX_LIMIT}")
    if page < 1:
        raise BadParameter("page", "page must be 1 or more")
    return limit, page


def compare(params: dict[str, str]) -> bool:
    value = params.get("compare")
    if value is None:
        return False
    if value != "previous_period":
        raise BadParameter("compare", "compare must be previous_period")
    return True


def with_imported(params: dict[str, str]) -> bool:
    """``with_imported=true``: add the site's imported figures where they answer the query."""
    value = params.get("with_imported", "false")
    if value not in ("true", "false"):
        raise BadParameter("with_imported", "with_imported must be true or false")
    return value == "true"


def query(site: str, chosen: Period, names: tuple[str, ...], where: tuple[Filter, ...], **more) -> StatsQuery:
    return StatsQuery(
        site=site, start=chosen.start, end=chosen.end, metrics=names, filters=where, timezone=chosen.zone, **more
    )


def stats_query(
    kind: str,
    site: str,
    params: dict[str, str],
    today: date,
    zone: str = UTC,
) -> tuple[StatsQuery, Period]:
    """The question a ``kind`` route (aggregate | timeseries | breakdown) asks, and its
    period: ``today`` is the date in the site's ``zone``."""
    chosen = period(params, today, zone)
    names, where, imports = metrics(params), filters(params), with_imported(params)
    if kind == "timeseries":
        return query(site, chosen, names, where, interval=interval(params, chosen), imports=imports), chosen
    if kind == "breakdown":
        limit, page = paging(params)
        prop = breakdown_property(params)
        return query(site, chosen, names, where, property=prop, limit=limit, page=page, imports=imports), chosen
    return query(site, chosen, names, where, imports=imports), chosen


def shifted(q: StatsQuery, to: Period) -> StatsQuery:
    return replace(q, start=to.start, end=to.end)


# --- helpers ---------------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text) if len(text) == 10 else _invalid_date(text)
    except ValueError:
        return _invalid_date(text)


def _invalid_date(text: str) -> date:
    raise BadParameter("date", f"date must be YYYY-MM-DD (a custom period: YYYY-MM-DD,YYYY-MM-DD), got '{text[:40]}'")


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    if not 1 <= index // 12 <= 9999:
        raise _out_of_range()
    return date(index // 12, index % 12 + 1, 1)


def _within_calendar(chosen: Period) -> Period:
    """``chosen`` when its end (the day after its last) and the period before it
    (``compare=previous_period``) are days of the calendar too."""
    length = (chosen.last - chosen.first).days + 1
    if chosen.last >= date.max or chosen.first.toordinal() - length < date.min.toordinal():
        raise _out_of_range()
    return chosen


def _out_of_range() -> BadParameter:
    return BadParameter(
        "date",
        f"date is out of range: a period, and the one before it, must lie between "
        f"{date.min} and {date.max - timedelta(days=1)}",
    )


def _integer(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise BadParameter(name, f"{name} must be a whole number")
    return int(text)


def _filter(text: str) -> Filter:
    found = [(text.find(op), op) for op in V1_OPERATORS if op in text]
    if not found:
        raise BadParameter(
            "filters", f"a filter is property==value, property!=value or property~value; got '{text[:80]}'"
        )
    at, op = min(found)  # the first operator: a value may hold the others
    prop, value = text[:at].strip(), text[at + len(op) :]
    if not is_known(prop):
        raise BadParameter("filters", f"unknown property '{prop[:80]}' in filters")
    values = tuple(v.replace("\\|", "|") for v in _split_unescaped(value, "|"))
    if not values or any(not v for v in values):
        raise BadParameter("filters", f"the filter on {prop} needs a value")
    if op == "~" and len(values) > MAX_CONTAINS_VALUES:
        raise BadParameter(
            "filters",
            f"a ~ filter takes at most {MAX_CONTAINS_VALUES} values separated by |; "
            f"the one on {prop} has {len(values)}",
        )
    return Filter(prop, op, values)


def _split_unescaped(text: str, separator: str) -> list[str]:
    return re.split(r"(?<!\\)" + re.escape(separator), text)
