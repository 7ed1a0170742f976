"""The goals a query names: those of its ``event:goal`` filters, of its goal breakdown
and of its behavioural filters, resolved once against the site's configured goals
(``storage.goals``). The engine counts their conversions in beacon's own events, and
``queries.imported`` in the imported tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from queries.metrics import revenue_refusal
from queries.model import Filter, QueryError
from queries.planner import Needs
from storage.clickhouse import Store
from storage.goals import Goal, list_goals, one_currency


@dataclass(frozen=True)
class Goals:
    filters: list[list[Goal]]  # per event:goal filter, the goals it names
    breakdown: list[Goal]  # the goals an event:goal breakdown lists
    behaviours: dict[Filter, list[Goal]] = field(default_factory=dict)  # per goal filter of a has_done


def resolve_goals(store: Store, n: Needs) -> Goals:
    behaving = [f for b in n.query.behaviours for f in b.filters if f.prop == "event:goal"]
    if not n.goal_filters and not n.by_goal and not behaving:
        return Goals([], [])
    configured = list_goals(store, n.query.site)
    filters = [named_goals(f, configured) for f in n.goal_filters]
    listed = [g for g in configured if all(g in chosen for chosen in filters)] if n.by_goal else []
    _refuse_mixed_revenue(n, filters)
    return Goals(filters, listed, {f: named_goals(f, configured) for f in behaving})


def named_goals(f: Filter, configured: list[Goal]) -> list[Goal]:
    """The goals an event:goal filter names (``==``: each must be configured)."""
    if f.op != "==":
        return [g for g in configured if any(v in g.display_name for v in f.values)]
    names = {g.display_name for g in configured}
    unknown = [v for v in f.values if v not in names]
    if unknown:
        raise QueryError(f"the goal '{unknown[0][:100]}' is not configured for this site")
    return [g for g in configured if g.display_name in f.values]


def _refuse_mixed_revenue(n: Needs, filters: list[list[Goal]]) -> None:
    """Revenue is summed in one currency: the goals filtered on must be revenue goals of one
    (beacon converts no currency; Plausible converts at the day's rate, or answers null)."""
    asked = [m.name for m in n.metrics if "revenue" in m.needed(False)]
    if asked and one_currency([g for chosen in filters for g in chosen]) is None:
        raise QueryError(revenue_refusal(asked[0]))
