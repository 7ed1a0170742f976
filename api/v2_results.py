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

from api.v2_query import RATES, V2Query
from queries.grouped import Group, Grouping, base_visitors, grouped
from queries.imported import Decision, decide_grouped
from queries.metrics import Value, half_up, values
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
    grouping = grouped(store, v2.query, v2.props)
    rows = _rows(store, v2, grouping)
    ordered = _ordered(rows, v2)
    page = ordered[v2.offset : v2.offset + v2.limit]
    return {
        "results": [{"metrics": r.metrics, "dimensions": r.dimensions} for r in page],
        "meta": _meta(v2, grouping, len(ordered), imports),
        "query": v2.echo,
    }


def _rows(store: Store, v2: V2Query, grouping: Grouping) -> list[Row]:
    groups = grouping.groups
    if not v2.dimensions and not groups:
        groups = [Group(None, (), dict.fromkeys(SUMS, 0))]
    kind = "breakdown" if v2.dimensions else "aggregate"
    rates = _Rates(store, v2)
    rows = []
    for group in groups:
        found = values(v2.query.metrics, group.sums, grouping.page_scoped, None, kind)
        found |= {name: rates.value(name, group) for name in RATES if name in v2.metrics}
        rows.append(Row(_dimension_values(v2, group), [found[m] for m in v2.metrics]))
    return rows


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
