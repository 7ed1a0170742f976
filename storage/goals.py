"""Conversion goals: an event name or a page path per site (``beacon goals``), read by
the stats API's ``conversion_rate`` metric and ``event:goal`` property.

A page goal's path may hold wildcards: ``*`` stands for any characters but ``/`` (within
one path segment), ``**`` for any characters (across segments): ``/blog/*`` is reached
on /blog/a, not on /blog/a/comments; ``/blog/**`` on both. Plausible's older rule; its
current one reads ``*`` as ``**`` (docs/analytics.md, "Goals")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store

KINDS = ("event", "page")
MAX_VALUE = 2000


@dataclass(frozen=True)
class Goal:
    site: str
    kind: str  # event | page
    value: str  # the event name, or the page path
    currency: str = ""  # a revenue goal's ISO 4217 currency (event goals only); '' otherwise

    @property
    def display_name(self) -> str:
        """How the API names it, as Plausible does: the event name, or ``Visit /path``."""
        return self.value if self.kind == "event" else f"Visit {self.value}"

    @property
    def wildcard(self) -> bool:
        """A page goal reached on every path its pattern matches."""
        return self.kind == "page" and "*" in self.value

    @property
    def path_regex(self) -> str:
        """The paths a page goal is reached on, as an RE2 pattern (ClickHouse's ``match``)."""
        return path_pattern(self.value)


def path_pattern(path: str) -> str:
    """``path`` with ``**`` for any characters and ``*`` for any but ``/``, anchored."""
    pieces = re.split(r"(\*\*|\*)", path)
    return "^" + "".join(_WILD.get(piece) or _literal(piece) for piece in pieces) + "$"


_WILD = {"**": ".*", "*": "[^/]*"}
_SPECIAL = set("\\.^$|?*+()[]{}")


def _literal(text: str) -> str:
    # Only RE2's special characters are escaped: RE2 refuses some escapes Python's re.escape writes.
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in text)


def one_currency(goals: list[Goal]) -> str | None:
    """The currency of ``goals`` when all are revenue goals of one currency, else None."""
    currencies = {g.currency for g in goals}
    if not goals or len(currencies) != 1 or "" in currencies:
        return None
    return currencies.pop()


def make_goal(site: str, kind: str, value: str, currency: str = "") -> Goal:
    if kind not in KINDS:
        raise ValueError(f"a goal is an event name or a page path, got kind {kind!r}")
    value = value.strip()
    if not value or len(value) > MAX_VALUE:
        raise ValueError(f"a goal's {kind} must be 1 to {MAX_VALUE} characters")
    if kind == "page" and not value.startswith("/"):
        raise ValueError(f"a page goal is a path starting with '/', got {value!r}")
    if currency and kind != "event":
        raise ValueError("only an event goal carries revenue: --currency goes with --event")
    if currency and not _CURRENCY.fullmatch(currency):
        raise ValueError(f"a revenue goal's currency is an ISO 4217 code (e.g. EUR), got {currency[:20]!r}")
    return Goal(site, kind, value, currency)


_CURRENCY = re.compile(r"[A-Z]{3}")


def add_goal(store: Store, site: str, kind: str, value: str, currency: str = "") -> Goal:
    """Adds the goal, or sets the currency of the one it names."""
    goal = make_goal(site, kind, value, currency.upper())
    _write(store, goal, removed=0)
    return goal


def remove_goal(store: Store, site: str, kind: str, value: str) -> bool:
    """False when the site has no such goal."""
    goal = make_goal(site, kind, value)
    if (kind, goal.value) not in {(g.kind, g.value) for g in list_goals(store, site)}:
        return False
    _write(store, goal, removed=1)
    return True


def list_goals(store: Store, site: str | None = None) -> list[Goal]:
    """The goals of ``site``, or of every site, in a stable order."""
    rows = store.rows(
        f"SELECT site, kind, value, currency FROM {DATABASE}.goals FINAL "
        "WHERE removed = 0 AND ({s:String} = '' OR site = {s:String}) ORDER BY site, kind, value",
        {"s": site or ""},
    )
    return [Goal(*row) for row in rows]


def _write(store: Store, goal: Goal, removed: int) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.goals (site, kind, value, currency, removed) "
        "VALUES ({s:String}, {k:String}, {v:String}, {c:String}, {r:UInt8})",
        {"s": goal.site, "k": goal.kind, "v": goal.value, "c": goal.currency, "r": removed},
    )
