"""Revenue in the Stats API v2, as Plausible gives it: ``total_revenue`` and
``average_revenue`` are ``{"value", "currency", "short", "long"}`` in the currency of
the revenue goals filtered on; without such goals, or with goals of several
currencies, they are null and ``meta.metric_warnings`` says why (Plausible's codes
and words)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queries.goals import named_goals
from queries.model import StatsQuery
from storage.clickhouse import Store
from storage.goals import list_goals, one_currency

REVENUE = ("total_revenue", "average_revenue")
WARNINGS = {
    "no_revenue_goals_matching": "Revenue metrics are null as there are no matching revenue goals.",
    "no_single_revenue_currency": "Revenue metrics are null as there are multiple currencies for the selected "
    "event:goals.",
}
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CNY": "CN¥", "KRW": "₩", "BRL": "R$"}
COMPACT = ((10**9, "B"), (10**6, "M"), (10**3, "K"))


@dataclass(frozen=True)
class Revenue:
    currency: str | None  # the one currency of the revenue goals filtered on
    warning: str | None  # else why the revenue metrics are null (a key of WARNINGS)


def revenue(store: Store, q: StatsQuery, metrics: tuple[str, ...]) -> Revenue | None:
    """Whether the revenue metrics asked can be summed, and in which currency (None: none asked)."""
    if not any(m in REVENUE for m in metrics):
        return None
    configured = list_goals(store, q.site)
    named = [g for f in q.filters if f.prop == "event:goal" for g in named_goals(f, configured)]
    currency = one_currency(named)
    if currency is not None:
        return Revenue(currency, None)
    several = len({g.currency for g in named if g.currency}) > 1
    return Revenue(None, "no_single_revenue_currency" if several else "no_revenue_goals_matching")


def warnings(metrics: tuple[str, ...], found: Revenue) -> dict[str, Any]:
    """``meta.metric_warnings`` of revenue metrics that could not be summed."""
    if found.warning is None:
        return {}
    words = {"code": found.warning, "warning": WARNINGS[found.warning]}
    return {"metric_warnings": {m: words for m in metrics if m in REVENUE}}


def money(value: float | None, currency: str) -> dict[str, Any] | None:
    """A revenue figure as Plausible shows it (``long``: to the cent; ``short``: compact)."""
    if value is None:
        return None
    symbol = SYMBOLS.get(currency, f"{currency} ")
    sign = "-" if value < 0 else ""
    return {
        "value": float(value),
        "currency": currency,
        "short": f"{sign}{symbol}{_compact(abs(value))}",
        "long": f"{sign}{symbol}{abs(value):,.2f}",
    }


def _compact(amount: float) -> str:
    for size, suffix in COMPACT:
        if amount >= size:
            return f"{amount / size:.1f}{suffix}"
    return f"{amount:.1f}"
