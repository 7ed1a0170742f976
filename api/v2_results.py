"""A ``V2Query``'s answer in Plausible's v2 shape:
``{"results": [{"metrics": […], "dimensions": […]}], "meta": {…}, "query": {…}}``.

Rows come from ``queries.grouped`` (every group with data), are sorted here by
``order_by`` (ties: by the dimensions' values, ascending) and paged. A query without
dimensions is one row, zeros included; with a time dimension, buckets without data are
left out, as Plausible leaves them (``include.time_labels`` lists every bucket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.v2_query import V2Query
from queries.grouped import Group, Grouping, base_visitors, grouped
from queries.metrics import Value, values
from queries.parts import SUMS
from storage.clickhouse import Store


@dataclass(frozen=True)
class Row:
    dimensions: list[str]
    metrics: list[Value]


def answer(store: Store, v2: V2Query) -> dict[str, Any]:
    grouping = grouped(store, v2.query, v2.props)
    rows = _rows(store, v2, grouping)
    ordered = _ordered(rows, v2)
    page = ordered[v2.offset : v2.offset + v2.limit]
    return {
        "results": [{"metrics": r.metrics, "dimensions": r.dimensions} for r in page],
        "meta": _meta(v2, grouping, len(ordered)),
        "query": v2.echo,
    }


def _rows(store: Store, v2: V2Query, grouping: Grouping) -> list[Row]:
    groups = grouping.groups
    if not v2.dimensions and not groups:
        groups = [Group(None, (), dict.fromkeys(SUMS, 0))]
    # conversion_rate divides by the visitors without the goal filters, per time bucket
    # (v1's timeseries does the same), across every other dimension.
    bases = base_visitors(store, v2.query, ()) if "conversion_rate" in v2.metrics else {}
    kind = "breakdown" if v2.dimensions else "aggregate"
    return [
        Row(
            _dimension_values(v2, group),
            list(values(v2.metrics, group.sums, grouping.page_scoped, bases.get((group.bucket, ()), 0), kind).values()),
        )
        for group in groups
    ]


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


def _meta(v2: V2Query, grouping: Grouping, total: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if v2.include["imports"]:
        meta |= {"imports_included": False, "imports_skip_reason": "no_imported_data"}
    if v2.include["time_labels"]:
        meta["time_labels"] = grouping.labels
    if v2.include["total_rows"]:
        meta["total_rows"] = total
    return meta
