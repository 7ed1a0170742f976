"""Funnels: 2 to 8 ordered steps per site and name (``beacon funnels``), each a page
path (``*`` and ``**`` as wildcards, as in Plausible's page goals) or an event name.
Read by the funnel query (``queries.funnel``), the stats API and the dashboard."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store

KINDS = ("event", "page")
MIN_STEPS, MAX_STEPS = 2, 8
MAX_NAME = 120
MAX_VALUE = 2000
# Events no step can name: a pageview is a page step, and engagement events (sent when
# a page is left) are no part of the read side.
RESERVED_EVENTS = ("pageview", "engagement")


@dataclass(frozen=True)
class Step:
    kind: str  # event | page
    value: str  # the event name, or the page path (maybe with wildcards)

    @property
    def label(self) -> str:
        """How it is shown, as Plausible names goals: the event name, or ``Visit /path``."""
        return self.value if self.kind == "event" else f"Visit {self.value}"

    @property
    def spec(self) -> str:
        """As the command line takes it: ``page:/path`` or ``event:Name``."""
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Funnel:
    site: str
    name: str
    steps: tuple[Step, ...]


def parse_step(spec: str) -> Step:
    """``page:/path`` or ``event:Name``, or ValueError naming what is wrong."""
    kind, colon, value = spec.partition(":")
    kind, value = kind.strip(), value.strip()
    if not colon or kind not in KINDS:
        raise ValueError(f"a step is page:PATH or event:NAME, got {spec[:100]!r}")
    if not value or len(value) > MAX_VALUE:
        raise ValueError(f"the {kind} of step {spec[:100]!r} must be 1 to {MAX_VALUE} characters")
    if kind == "page" and not value.startswith("/"):
        raise ValueError(f"a page step is a path starting with '/', got {value[:100]!r}")
    if kind == "event" and value in RESERVED_EVENTS:
        raise ValueError(f"a step cannot be the event {value!r}: use a page step for pageviews")
    return Step(kind, value)


def make_funnel(site: str, name: str, specs: list[str]) -> Funnel:
    """A funnel from the command line's words, or ValueError naming the problem."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError(f"a funnel's name is 1 to {MAX_NAME} printable characters")
    if not MIN_STEPS <= len(specs) <= MAX_STEPS:
        raise ValueError(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps, got {len(specs)}")
    steps = tuple(parse_step(spec) for spec in specs)
    repeated = [s.spec for i, s in enumerate(steps) if s in steps[:i]]
    if repeated:  # as in Plausible, where a goal is in a funnel at most once
        raise ValueError(f"the step {repeated[0][:100]!r} is named twice; each step may appear once")
    return Funnel(site, name, steps)


def add_funnel(store: Store, site: str, name: str, specs: list[str]) -> Funnel:
    funnel = make_funnel(site, name, specs)
    if find_funnel(store, site, funnel.name) is not None:
        raise ValueError(f"{site} already has a funnel named {funnel.name!r}; remove it first")
    _write(store, funnel, removed=0)
    return funnel


def remove_funnel(store: Store, site: str, name: str) -> bool:
    """False when the site has no funnel of that name."""
    funnel = find_funnel(store, site, name)
    if funnel is None:
        return False
    _write(store, funnel, removed=1)
    return True


def find_funnel(store: Store, site: str, name: str) -> Funnel | None:
    found = [f for f in list_funnels(store, site) if f.name == name.strip()]
    return found[0] if found else None


def list_funnels(store: Store, site: str | None = None) -> list[Funnel]:
    """The funnels of ``site``, or of every site, by site and name."""
    rows = store.rows(
        f"SELECT site, name, step_kinds, step_values FROM {DATABASE}.funnels FINAL "
        "WHERE removed = 0 AND ({s:String} = '' OR site = {s:String}) ORDER BY site, name",
        {"s": site or ""},
    )
    return [Funnel(s, n, tuple(Step(k, v) for k, v in zip(kinds, values))) for s, n, kinds, values in rows]


def _write(store: Store, funnel: Funnel, removed: int) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.funnels (site, name, step_kinds, step_values, removed) "
        "VALUES ({s:String}, {n:String}, {k:Array(String)}, {v:Array(String)}, {r:UInt8})",
        {
            "s": funnel.site,
            "n": funnel.name,
            "k": [step.kind for step in funnel.steps],
            "v": [step.value for step in funnel.steps],
            "r": removed,
        },
    )
