"""Conversion goals: an event name or a page path per site (``beacon goals``), read by
the stats API's ``conversion_rate`` metric and ``event:goal`` property."""

from __future__ import annotations

from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store

KINDS = ("event", "page")
MAX_VALUE = 2000


@dataclass(frozen=True)
class Goal:
    site: str
    kind: str  # event | page
    value: str  # the event name, or the page path

    @property
    def display_name(self) -> str:
        """How the API names it, as Plausible does: the event name, or ``Visit /path``."""
        return self.value if self.kind == "event" else f"Visit {self.value}"


def make_goal(site: str, kind: str, value: str) -> Goal:
    if kind not in KINDS:
        raise ValueError(f"a goal is an event name or a page path, got kind {kind!r}")
    value = value.strip()
    if not value or len(value) > MAX_VALUE:
        raise ValueError(f"a goal's {kind} must be 1 to {MAX_VALUE} characters")
    if kind == "page" and not value.startswith("/"):
        raise ValueError(f"a page goal is a path starting with '/', got {value!r}")
    return Goal(site, kind, value)


def add_goal(store: Store, site: str, kind: str, value: str) -> Goal:
    goal = make_goal(site, kind, value)
    _write(store, goal, removed=0)
    return goal


def remove_goal(store: Store, site: str, kind: str, value: str) -> bool:
    """False when the site has no such goal."""
    goal = make_goal(site, kind, value)
    if goal not in list_goals(store, site):
        return False
    _write(store, goal, removed=1)
    return True


def list_goals(store: Store, site: str | None = None) -> list[Goal]:
    """The goals of ``site``, or of every site, in a stable order."""
    rows = store.rows(
        f"SELECT site, kind, value FROM {DATABASE}.goals FINAL "
        "WHERE removed = 0 AND ({s:String} = '' OR site = {s:String}) ORDER BY site, kind, value",
        {"s": site or ""},
    )
    return [Goal(*row) for row in rows]


def _write(store: Store, goal: Goal, removed: int) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.goals (site, kind, value, removed) "
        "VALUES ({s:String}, {k:String}, {v:String}, {r:UInt8})",
        {"s": goal.site, "k": goal.kind, "v": goal.value, "r": removed},
    )
