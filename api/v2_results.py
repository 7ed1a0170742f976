"""A ``V2Query``'s answer in Plausible's v2 shape:
``{"results": [{"metrics": […], "dimensions": […]}], "meta": {…}, "query": {…}}``.

Rows come from ``queries.grouped`` (every group with data), are sorted here by
``order_by`` (ties: by the dimensions' values, ascending) and paged. A query without
dimensions is one row, zeros included; with a time dimension, buckets without data are
left out, as Plausible leaves them (``include.time_labels`` lists every bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from api.v2_money import REVENUE, money, revenue, warnings
from api.v2_query import RATES, V2Query
from queries.grouped import Group, Grouping, base_visitors, grouped
from queries.imported import Decision, decide_grouped
from queries.metrics import METRICS, Value, half_up, values
from queries.model import StatsQuery
from queries.parts import SUMS
from storage.clickhouse import Store


@dataclass(frozen=True)
class Row:
    dimensions: list[str]
    metrics: list[Value]


def answer(store: Store, v2: V2Query) -> dict[str, Any]:
    imports = decide_grouped(store, v2.query, v2.props) if v2.include["imports"] else None
    if imports is not None and not imports.included:
        v2 = replace(v2, query=replace(v2.query, imports=False))
    summed = revenue(store, v2.query, v2.metrics)
    if summed is not None and summed.currency is None:  # null, as Plausible's, with a warning
        kept = tuple(m for m in v2.query.metrics if m not in REVENUE)
        v2 = replace(v2, query=replace(v2.query, metrics=kept or ("visitors",)))
    grouping = grouped(store, v2.query, v2.props)
    rows = _rows(store, v2, grouping)
    ordered = _ordered(rows, v2)
    page = ordered[v2.offset : v2.offset + v2.limit]
    results = [{"metrics": r.metrics, "dimensions": r.dimensions} for r in page]
    meta = _meta(v2, grouping, len(ordered), imports)
    if v2.comparison is not None:
        results, labels = _compared(store, v2, grouping, page)
        meta |= {"comparison_time_labels": labels} if v2.include["time_labels"] else {}
    if summed is not None:
        meta |= warnings(v2.metrics, summed)
        results = _in_money(results, v2.metrics, summed.currency) if summed.currency else results
    return {"results": results, "meta": meta, "query": v2.echo}


def _in_money(results: list[dict[str, Any]], metrics: tuple[str, ...], currency: str) -> list[dict[str, Any]]:
    """Revenue figures as Plausible's money objects (changes stay numbers)."""

    def shown(values_: list[Value]) -> list[Any]:
        return [money(v, currency) if m in REVENUE else v for m, v in zip(metrics, values_, strict=True)]

    for result in results:
        result["metrics"] = shown(result["metrics"])
        if "comparison" in result:
            result["comparison"]["metrics"] = shown(result["comparison"]["metrics"])
    return results


def _rows(store: Store, v2: V2Query, grouping: Grouping) -> list[Row]:
    groups = grouping.groups
    if not v2.dimensions and not groups:
        groups = [_empty(None, ())]
    if v2.comparison is not None and v2.dimensions and not v2.props:
        # Compared, a time dimension alone lists every bucket, as Plausible's does.
        found = {g.bucket for g in groups}
        groups = groups + [_empty(label, ()) for label in grouping.labels if label not in found]
    rates = _Rates(store, v2)
    return [_row(v2, group, grouping.page_scoped, rates) for group in groups]


def _empty(bucket: str | None, values_: tuple[str, ...]) -> Group:
    return Group(bucket, values_, dict.fromkeys(SUMS, 0))


def _row(v2: V2Query, group: Group, page_scoped: bool, rates: _Rates) -> Row:
    kind = "breakdown" if v2.dimensions else "aggregate"
    found = values(v2.query.metrics, group.sums, page_scoped, None, kind)
    found |= {name: rates.value(name, group) for name in RATES if name in v2.metrics}
    return Row(_dimension_values(v2, group), [found.get(m) for m in v2.metrics])


def _compared(store: Store, v2: V2Query, grouping: Grouping, page: list[Row]) -> tuple[list[dict[str, Any]], list[str]]:
    """``include.comparisons``: each row with its counterpart in the range compared with
    (Plausible's ``comparison``: its dimensions, metrics and each metric's change), and
    that range's time buckets."""
    lo, hi = v2.comparison
    earlier = replace(v2, query=replace(v2.query, start=lo, end=hi), comparison=None)
    before = grouped(store, earlier.query, earlier.props)
    counterparts = _Counterparts(earlier, before, _rows(store, earlier, before), _Rates(store, earlier), grouping)
    results = []
    for row in page:
        result: dict[str, Any] = {"metrics": row.metrics, "dimensions": row.dimensions}
        then = counterparts.of(row)
        if then is not None:
            change = [_change(m, now, was) for m, now, was in zip(v2.metrics, row.metrics, then.metrics, strict=True)]
            result["comparison"] = {"dimensions": then.dimensions, "metrics": then.metrics, "change": change}
        results.append(result)
    return results, before.labels


class _Counterparts:
    """A row's counterpart in the range compared with: the row with the same property
    values and, for a time bucket, the bucket at the same position; zeros when it had
    no data; none when that range has no bucket there."""

    def __init__(self, earlier: V2Query, before: Grouping, rows: list[Row], rates: _Rates, grouping: Grouping):
        self.earlier, self.before, self.rates = earlier, before, rates
        self.found = {tuple(r.dimensions): r for r in rows}
        self.bucket = dict(zip(grouping.labels, before.labels))
        self.at_time = next((i for i, d in enumerate(earlier.dimensions) if d not in earlier.props), None)

    def of(self, row: Row) -> Row | None:
        key = list(row.dimensions)
        if self.at_time is not None:
            key[self.at_time] = self.bucket.get(key[self.at_time])
        if None in key:
            return None
        if tuple(key) in self.found:
            return self.found[tuple(key)]
        bucket = key[self.at_time] if self.at_time is not None else None
        props = tuple(k for i, k in enumerate(key) if i != self.at_time)
        return _row(self.earlier, _empty(bucket, props), self.before.page_scoped, self.rates)


def _change(name: str, now: Value, before: Value) -> Value:
    """Plausible's change: percent for counts and shares, points for rates."""
    like = {"percentage": "visitors", "group_conversion_rate": "conversion_rate"}.get(name, name)
    return METRICS[like].changed(now, before)


class _Rates:
    """Plausible's v2 rates of a group's visitors (api.v2_query.RATES): each total is
    asked once, when first needed."""

    def __init__(self, store: Store, v2: V2Query):
        self.store, self.v2 = store, v2
        self.goal_at = v2.props.index("event:goal") if "event:goal" in v2.props else None
        self._totals: dict[str, dict[tuple, int]] = {}

    def value(self, name: str, group: Group) -> float | None:
        visitors = group.sums["visitors"]
        if name == "percentage":
            total = self._total(name, lambda: grouped(self.store, self._whole_range(), ()).groups)
            return _percent(visitors, total.get((None, ()), 0), None)
        if name == "conversion_rate":
            total = self._total(name, lambda: base_visitors(self.store, self._whole_range(), ()))
            return _percent(visitors, total.get((None, ()), 0), 0.0)
        props = tuple(p for p in self.v2.props if p != "event:goal")
        total = self._total(name, lambda: base_visitors(self.store, self.v2.query, props))
        key = tuple(v for i, v in enumerate(group.values) if i != self.goal_at)
        return _percent(visitors, total.get((group.bucket, key), 0), 0.0)

    def _whole_range(self) -> StatsQuery:
        return replace(self.v2.query, interval=None, metrics=("visitors",))

    def _total(self, name: str, ask: Callable[[], Any]) -> dict[tuple, int]:
        if name not in self._totals:
            found = ask()
            if isinstance(found, list):  # groups: their visitors
                found = {(g.bucket, g.values): g.sums["visitors"] for g in found}
            self._totals[name] = found
        return self._totals[name]


def _percent(part: int, whole: int, empty: float | None) -> float | None:
    return float(half_up(Fraction(100 * part, whole), 1)) if whole else empty


def _dimension_values(v2: V2Query, group: Group) -> list[str]:
    props = iter(group.values)
    return [next(props) if d in v2.props else group.bucket for d in v2.dimensions]


def _ordered(rows: list[Row], v2: V2Query) -> list[Row]:
    ordered = sorted(rows, key=lambda r: r.dimensions)
    for name, direction in reversed(v2.order_by):
        at_metric = v2.metrics.index(name) if name in v2.metrics else None
        at_dimension = v2.dimensions.index(name) if at_metric is None else None

        def key(row: Row, m: int | None = at_metric, d: int | None = at_dimension) -> tuple:
            value = row.metrics[m] if m is not None else row.dimensions[d]
            return (value is not None, value if value is not None else 0)

        ordered.sort(key=key, reverse=direction == "desc")  # stable: earlier keys break ties
    return ordered


def _meta(v2: V2Query, grouping: Grouping, total: int, imports: Decision | None) -> dict[str, Any]:
    meta: dict[str, Any] = imports.meta() if imports is not None else {}
    if v2.include["time_labels"]:
        meta["time_labels"] = grouping.labels
    if v2.include["total_rows"]:
        meta["total_rows"] = total
    return meta
