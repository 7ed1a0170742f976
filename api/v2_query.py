"""Plausible's Stats API v2 request (``POST /api/v2/query``) → a ``V2Query``: the
``queries.model.StatsQuery`` it asks, with its dimensions, order, page and includes;
or ``V2Error`` with Plausible's words for what is wrong (answered 400).

Times are the site's: named ranges end "today" there, dates are its local days, and a
datetime without an offset is a wall-clock time there. Filters are nested arrays
(``["is", "visit:source", ["Google"]]``, ``and``/``or``/``not``); the read side takes
a conjunction of one-property filters, so ``not`` is pushed down to the leaves and an
``or`` must join filters on one dimension with one positive operator (docs/api-v2.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from queries.days import start_of, zone
from queries.metrics import METRICS
from queries.model import Filter, StatsQuery
from queries.properties import is_known

NAMED_RANGES = ("day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all")
TIME_DIMENSIONS = {"time:hour": "hour", "time:day": "date", "time:week": "week", "time:month": "month"}
OPERATORS = {"is": "==", "is_not": "!=", "contains": "~", "contains_not": "!~", "matches": "=~", "matches_not": "!=~"}
NEGATED = {"==": "!=", "!=": "==", "~": "!~", "!~": "~", "=~": "!=~", "!=~": "=~"}
POSITIVE = ("==", "~", "=~")  # what an ``or`` may join
# Plausible's v2 rates, computed here (api.v2_results) as Plausible computes them: to a
# tenth of a percent, over the visitors without goal and props filters (conversion_rate:
# of the whole range; group_conversion_rate: of the row's group) or with every filter
# (percentage: of the whole range).
RATES = ("conversion_rate", "group_conversion_rate", "percentage")
METRIC_NAMES = tuple(m for m in METRICS if m != "conversion_rate") + RATES
KEYS = ("site_id", "metrics", "date_range", "dimensions", "filters", "order_by", "include", "pagination")
INCLUDES = ("imports", "time_labels", "total_rows")
MAX_LIMIT = 10000
MAX_CLAUSES = 255  # needles of one ClickHouse multiSearchAny
MAX_TEXT = 2000  # characters of one filter value
MAX_DEPTH = 16  # nesting of and/or/not
MAX_SPAN = timedelta(days=3661)  # as v1's custom ranges: ten years
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


class V2Error(ValueError):
    def body(self) -> dict:
        return {"error": str(self)}


@dataclass(frozen=True)
class V2Query:
    query: StatsQuery  # no property: the dimensions are below; interval: the time dimension's bucket
    metrics: tuple[str, ...]
    dimensions: tuple[str, ...]  # as asked, in order
    props: tuple[str, ...]  # the dimensions that are properties, in order
    order_by: tuple[tuple[str, str], ...]  # (metric or dimension, asc | desc)
    limit: int
    offset: int
    include: dict[str, bool]
    echo: dict[str, Any]  # the query as understood, for the answer


def site_id(body: Any) -> str:
    if not isinstance(body, dict):
        raise V2Error("#: Type mismatch. Expected Object but got something else.")
    site = body.get("site_id")
    if not isinstance(site, str) or not site.strip():
        raise V2Error("#/site_id: Required property site_id was not present, or is not a string.")
    return site.strip().lower()


def parse(body: dict, site: str, zone_name: str, now: datetime, first_day: Callable[[], date]) -> V2Query:
    """``body`` as a question on ``site``; ``now``: this instant, ``first_day``: the
    site's first day with data (for ``"all"``)."""
    unexpected = [k for k in body if k not in KEYS]
    if unexpected:
        raise V2Error(f"#: Unexpected property {_quoted(unexpected[0])}.")
    names = metric_names(body.get("metrics"))
    start, end = date_range(body.get("date_range"), zone_name, now, first_day)
    dimensions = dimension_names(body.get("dimensions", []))
    times = [d for d in dimensions if d == "time" or d in TIME_DIMENSIONS]
    interval = _interval(times[0], start, end) if times else None
    props = tuple(d for d in dimensions if d not in times)
    given_filters = body.get("filters", [])
    where = filters(given_filters)
    order = order_by(body.get("order_by"), names, dimensions, times[0] if times else None)
    include = includes(body.get("include", {}), bool(times))
    limit, offset = pagination(body.get("pagination", {}))
    _check_rates(names, dimensions, where)
    _check_session_metrics(names, dimensions, where)
    q = StatsQuery(
        site=site,
        start=start,
        end=end,
        metrics=engine_metrics(names),
        filters=where,
        interval=interval,
        timezone=zone_name,
        imports=include["imports"],
    )
    echo = {
        "site_id": site,
        "metrics": list(names),
        "date_range": [_shown(start, zone_name), _shown(end - timedelta(seconds=1), zone_name)],
        "dimensions": list(dimensions),
        "filters": given_filters,
        "order_by": [list(o) for o in order],
        "include": include,
        "pagination": {"limit": limit, "offset": offset},
    }
    return V2Query(q, names, dimensions, props, order, limit, offset, include, echo)


def engine_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """What the read side is asked for ``names``: the rates v2 computes itself
    (``RATES``, from visitors and their totals) as visitors."""
    return tuple(dict.fromkeys("visitors" if n in RATES else n for n in names))


def _check_rates(names: tuple[str, ...], dimensions: tuple[str, ...], where: tuple[Filter, ...]) -> None:
    goal = "event:goal" in dimensions or any(f.prop == "event:goal" for f in where)
    for name in ("conversion_rate", "group_conversion_rate"):
        if name in names and not goal:
            raise V2Error(f"Metric `{name}` can only be queried with event:goal filters or dimensions.")
    if "percentage" in names and not dimensions:
        raise V2Error("Metric `percentage` can only be queried with a dimension.")


def _check_session_metrics(names: tuple[str, ...], dimensions: tuple[str, ...], where: tuple[Filter, ...]) -> None:
    """Plausible's words for what the planner refuses too (queries.planner)."""
    sessions = [n for n in names if n in METRICS and METRICS[n].of_visits]
    events = [d for d in dimensions if d.startswith("event:") and d != "event:page"]
    if sessions and events:
        raise V2Error(
            f"Session metric(s) `{', '.join(sessions)}` cannot be queried along with "
            f"event dimension(s) `{', '.join(events)}`"
        )
    if "views_per_visit" in names and any(f.prop == "event:page" for f in where):
        raise V2Error("Metric `views_per_visit` cannot be queried with a filter on `event:page`.")


def metric_names(given: Any) -> tuple[str, ...]:
    if not isinstance(given, list):
        raise V2Error("#/metrics: Required property metrics was not present, or is not a list.")
    if not given:
        raise V2Error("#/metrics: Expected a minimum of 1 items but got 0.")
    for i, name in enumerate(given):
        if not isinstance(name, str) or name not in METRIC_NAMES:
            raise V2Error(f"#/metrics/{i}: Invalid metric {_quoted(name)}")
    if len(set(given)) != len(given):
        raise V2Error("#/metrics: Expected items to be unique but they were not.")
    return tuple(given)


def dimension_names(given: Any) -> tuple[str, ...]:
    if not isinstance(given, list):
        raise V2Error("#/dimensions: Type mismatch. Expected Array but got something else.")
    for i, name in enumerate(given):
        if not isinstance(name, str) or not (name == "time" or name in TIME_DIMENSIONS or is_known(name)):
            raise V2Error(f"#/dimensions/{i}: Invalid dimension {_quoted(name)}")
    if len(set(given)) != len(given):
        raise V2Error("#/dimensions: Expected items to be unique but they were not.")
    if sum(d == "time" or d in TIME_DIMENSIONS for d in given) > 1:
        raise V2Error("Invalid dimensions: only one time dimension may be asked.")
    return tuple(given)


# --- date_range ---------------------------------------------------------------------------


def date_range(given: Any, zone_name: str, now: datetime, first_day: Callable[[], date]) -> tuple[datetime, datetime]:
    """[start, end) instants of ``given``."""
    start, end = _range(given, zone_name, now, first_day)
    if end - start > MAX_SPAN:
        raise V2Error(f"#/date_range: Invalid date range {_quoted(given)}: it spans at most ten years")
    return start, end


def _range(given: Any, zone_name: str, now: datetime, first_day: Callable[[], date]) -> tuple[datetime, datetime]:
    try:
        if isinstance(given, str) and given in NAMED_RANGES:
            today = now.astimezone(zone(zone_name)).date()
            first, last = _named(given, today, first_day)
            return start_of(first, zone_name), start_of(last + timedelta(days=1), zone_name)
        if isinstance(given, list) and len(given) == 2 and all(isinstance(x, str) for x in given):
            return _pair(given[0], given[1], zone_name)
    except (ValueError, OverflowError):
        pass
    raise V2Error(f"#/date_range: Invalid date range {_quoted(given)}")


def _named(name: str, today: date, first_day: Callable[[], date]) -> tuple[date, date]:
    if name == "day":
        return today, today
    if name.endswith("d"):  # the N days before today, today excluded (Plausible's)
        return today - timedelta(days=int(name[:-1])), today - timedelta(days=1)
    if name == "month":
        return today.replace(day=1), _add_months(today.replace(day=1), 1) - timedelta(days=1)
    if name == "year":
        return today.replace(month=1, day=1), today.replace(month=12, day=31)
    if name.endswith("mo"):  # the N whole months before this one
        this_month = today.replace(day=1)
        return _add_months(this_month, -int(name[:-2])), this_month - timedelta(days=1)
    return min(first_day(), today), today


def _pair(first: str, last: str, zone_name: str) -> tuple[datetime, datetime]:
    if len(first) == 10 and len(last) == 10:
        lo, hi = date.fromisoformat(first), date.fromisoformat(last)
        if hi < lo or hi >= date(9999, 12, 30):
            raise ValueError("not a range")
        return start_of(lo, zone_name), start_of(hi + timedelta(days=1), zone_name)
    lo, hi = _moment(first, zone_name), _moment(last, zone_name)
    if hi < lo:
        raise ValueError("not a range")
    return lo, hi + timedelta(seconds=1)  # the last second is included, as Plausible's


def _moment(text: str, zone_name: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if not 2 <= moment.year <= 9998:
        raise ValueError("out of range")
    moment = moment.replace(microsecond=0)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone(zone_name))


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _interval(asked: str, start: datetime, end: datetime) -> str:
    """The bucket of a time dimension; plain ``time`` picks one by the range's length."""
    if asked != "time":
        return TIME_DIMENSIONS[asked]
    length = end - start
    if length <= timedelta(hours=48):
        return "hour"
    if length <= timedelta(days=40):
        return "date"
    return "week" if length <= timedelta(weeks=52) else "month"


def _shown(moment: datetime, zone_name: str) -> str:
    return moment.astimezone(zone(zone_name)).isoformat(timespec="seconds")


# --- filters ------------------------------------------------------------------------------


def filters(given: Any) -> tuple[Filter, ...]:
    if not isinstance(given, list):
        raise V2Error("#/filters: Type mismatch. Expected Array but got something else.")
    found: list[Filter] = []
    for i, expression in enumerate(given):
        found += _conjunction(expression, f"#/filters/{i}", negated=False, depth=0)
    return tuple(found)


def _conjunction(expression: Any, path: str, negated: bool, depth: int) -> list[Filter]:
    """``expression`` (``negated``: its negation) as filters that must all hold."""
    if depth > MAX_DEPTH or not isinstance(expression, list) or not expression or not isinstance(expression[0], str):
        raise V2Error(f"{path}: Invalid filter {_quoted(expression)}")
    head = expression[0]
    if head in ("has_done", "has_not_done"):
        raise V2Error("Invalid filters. beacon does not answer has_done or has_not_done filters yet.")
    if head == "not" and len(expression) == 2:
        return _conjunction(expression[1], path, not negated, depth + 1)
    if head in ("and", "or") and len(expression) == 2 and isinstance(expression[1], list) and expression[1]:
        parts = [_conjunction(e, path, negated, depth + 1) for e in expression[1]]
        if (head == "and") != negated:
            return [f for part in parts for f in part]
        return [_either(parts)]
    if head in OPERATORS and len(expression) in (3, 4):
        leaf = _leaf(expression, path)
        if leaf.prop == "event:goal" and depth > 0:
            raise V2Error("Invalid filters. Dimension `event:goal` can only be filtered at the top level.")
        return [Filter(leaf.prop, NEGATED[leaf.op], leaf.values) if negated else leaf]
    raise V2Error(f"{path}: Invalid filter {_quoted(expression)}")


def _either(parts: list[list[Filter]]) -> Filter:
    """An ``or``: one filter holding every alternative, when they share a dimension and
    a positive operator."""
    leaves = [p[0] for p in parts if len(p) == 1]
    same = len(leaves) == len(parts) and len({(f.prop, f.op) for f in leaves}) == 1
    if not same or leaves[0].op not in POSITIVE:
        raise V2Error(
            "Invalid filters. beacon answers `or` only between filters on one dimension with one operator "
            "(is, contains or matches); see docs/api-v2.md."
        )
    values = tuple(dict.fromkeys(v for f in leaves for v in f.values))
    return Filter(leaves[0].prop, leaves[0].op, values)


def _leaf(expression: list, path: str) -> Filter:
    op, dimension, clauses = expression[0], expression[1], expression[2]
    modifiers = expression[3] if len(expression) == 4 else {}
    valid = (
        isinstance(dimension, str)
        and is_known(dimension)
        and isinstance(clauses, list)
        and 0 < len(clauses) <= MAX_CLAUSES
        and all(_clause(c) for c in clauses)
        and isinstance(modifiers, dict)
        and set(modifiers) <= {"case_sensitive"}
        and isinstance(modifiers.get("case_sensitive", True), bool)
    )
    if not valid:
        raise V2Error(f"{path}: Invalid filter {_quoted(expression)}")
    values = tuple(str(c) for c in clauses)
    if (
        dimension == "visit:country"
        and op in ("is", "is_not")
        and not all(re.fullmatch("[A-Za-z]{2}", v) for v in values)
    ):
        raise V2Error("Invalid visit:country filter, visit:country needs to be a valid 2-letter country code.")
    if modifiers.get("case_sensitive", True):
        return Filter(dimension, OPERATORS[op], values)
    if dimension == "event:goal":
        raise V2Error("Invalid filters. beacon matches goals by their exact names only (case_sensitive: false).")
    return _case_insensitive(dimension, op, values)


def _clause(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _case_insensitive(dimension: str, op: str, values: tuple[str, ...]) -> Filter:
    """``case_sensitive: false`` as re2 expressions with the (?i) flag."""
    if op in ("matches", "matches_not"):
        patterns = tuple(f"(?i){v}" for v in values)
    elif op in ("is", "is_not"):
        patterns = tuple(f"(?i)^{_escaped(v)}$" for v in values)
    else:
        patterns = tuple(f"(?i){_escaped(v)}" for v in values)
    return Filter(dimension, "=~" if op in ("is", "contains", "matches") else "!=~", patterns)


def _escaped(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


# --- order, includes, page -----------------------------------------------------------------


def order_by(given: Any, names: tuple[str, ...], dimensions: tuple[str, ...], time: str | None) -> tuple:
    if given is None:
        return ((time, "asc"),) * (time is not None) + ((names[0], "desc"),)
    if not isinstance(given, list) or not given:
        raise V2Error("#/order_by: Type mismatch. Expected a non-empty Array.")
    order = []
    for i, entry in enumerate(given):
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] in ("asc", "desc")):
            raise V2Error(f"#/order_by/{i}: Invalid order_by entry {_quoted(entry)}")
        if not isinstance(entry[0], str) or entry[0] not in names + dimensions:
            raise V2Error(f"Invalid order_by entry '{_text(entry)}'. Entry is not a queried metric or dimension.")
        order.append((entry[0], entry[1]))
    return tuple(order)


def includes(given: Any, has_time: bool) -> dict[str, bool]:
    if not isinstance(given, dict):
        raise V2Error("#/include: Type mismatch. Expected Object but got something else.")
    for key, value in given.items():
        if key not in INCLUDES:
            raise V2Error(f"#/include: Unexpected property {_quoted(key)}.")
        if not isinstance(value, bool):
            raise V2Error(f"#/include/{key}: Type mismatch. Expected Boolean but got something else.")
    if given.get("time_labels") and not has_time:
        raise V2Error("Invalid include.time_labels: requires a time dimension.")
    return {key: bool(given.get(key, False)) for key in INCLUDES}


def pagination(given: Any) -> tuple[int, int]:
    if not isinstance(given, dict) or not set(given) <= {"limit", "offset"}:
        raise V2Error("#/pagination: Expected an object with limit and offset.")
    limit, offset = given.get("limit", MAX_LIMIT), given.get("offset", 0)
    if not _whole(limit) or not 1 <= limit <= MAX_LIMIT:
        raise V2Error(f"#/pagination/limit: Expected a whole number from 1 to {MAX_LIMIT}.")
    if not _whole(offset) or not 0 <= offset <= 10**9:
        raise V2Error("#/pagination/offset: Expected a whole number of 0 or more.")
    return limit, offset


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:120]


def _quoted(value: Any) -> str:
    return f'"{value[:80]}"' if isinstance(value, str) else _text(value)
