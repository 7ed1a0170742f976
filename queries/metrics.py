"""Metric values from summed rows, as Plausible's v1 reports them: counts as integers,
bounce_rate in whole percent, visit_duration in whole seconds (mean of the visits'
durations), views_per_visit with two decimals, conversion_rate in percent with two
decimals. Halves round up. Both paths finish their sums here, so they round alike."""
from __future__ import annotations

import math

COUNTS = ("visitors", "visits", "pageviews", "events")


def half_up(x: float, digits: int = 0) -> float:
    scale = 10 ** digits
    return math.floor(x * scale + 0.5) / scale


def values(metrics: tuple[str, ...], sums: dict[str, int], page_scoped: bool, base_visitors: int | None,
           kind: str) -> dict[str, int | float | None]:
    """``base_visitors``: the visitors without goal filters (conversion_rate's base).
    ``kind`` (aggregate | timeseries | breakdown) decides what a rate is with nothing
    to divide: visit_duration is 0 in an aggregate and null elsewhere (Plausible's
    empty timeseries buckets); bounce_rate is 0, but null in a breakdown row (a page
    no visit entered on has no bounce rate)."""
    out: dict[str, int | float | None] = {}
    for metric in metrics:
        if metric in COUNTS:
            out[metric] = int(sums[metric])
        elif metric == "bounce_rate":
            bounces, visits = ((sums["entry_bounces"], sums["entry_visits"]) if page_scoped
                               else (sums["bounces"], sums["visits"]))
            out[metric] = int(half_up(100 * bounces / visits)) if visits else (None if kind == "breakdown" else 0)
        elif metric == "visit_duration":
            visits = sums["visits"]
            out[metric] = int(half_up(sums["duration"] / visits)) if visits else (0 if kind == "aggregate" else None)
        elif metric == "views_per_visit":
            visits = sums["visits"]
            out[metric] = half_up(sums["pageviews"] / visits, 2) if visits else 0.0
        elif metric == "conversion_rate":
            out[metric] = half_up(100 * sums["visitors"] / base_visitors, 2) if base_visitors else 0.0
    return out
