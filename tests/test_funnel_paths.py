"""Funnels on both paths: from the built visits' sequences (with the open visits cut
from the events) and from the raw events, against the plain-Python oracle of
``tests/test_funnels.py``: every funnel, every filter, a watermark inside the period,
a visit cut at midnight, and a store upgraded from before the sequences (visits
built without them, then given them by ``rollups.sequences``)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from queries.funnel import funnel
from queries.model import Filter, StatsQuery
from queries.planner import AGGREGATES, EVENTS
from rollups.sequences import missing_before, sequence_older_visits
from rollups.visit_builder import build_closed_visits, watermark
from storage.funnels import make_funnel
from storage.migrations import migrate
from storage.sites import add_site
from tests.test_funnels import FILTERS, FIRST, FUNNELS, LAST, SITE, TORONTO, TRAFFIC, ZONED, ZONES, expected, scripted
from tests.test_funnels import utc as utc_at
from tests.traffic import Event, clean

# The builder has closed the visits that ended before 14:00 on the period's second day.
MARK = utc_at(FIRST + timedelta(days=1), 14)
LATENESS = timedelta(minutes=10)
STEPS = FUNNELS[SITE]["Signup"]
EDGES = {
    # campaign: [(visitor, first event, script)], and the Signup funnel's visitors per step
    # /pricing before the watermark, Signup after: a visit still open when the builder ran.
    "across_mark": ([(2001, MARK - timedelta(minutes=10), [(0, "/pricing"), (15 * 60, "Signup")])], [1, 1]),
    # Both steps well before it: a built visit.
    "built": ([(2002, MARK - timedelta(hours=3), [(0, "/pricing"), (60, "Signup")])], [1, 1]),
    # /pricing at 23:55, Signup at 00:05: two visits, cut at midnight, so the funnel is not done.
    "midnight": ([(2003, utc_at(FIRST, 23, 55), [(0, "/pricing"), (10 * 60, "Signup")])], [1, 0]),
    # A path holding the sequence's separators is not /pricing, nor the Signup event.
    "separators": (
        [(2004, utc_at(FIRST, 9), [(0, "/x\x1e/pricing"), (30, "/y\x1e\x1dSignup\x1e"), (60, "Signup")])],
        [0, 0],
    ),
}


def edge_events() -> list[Event]:
    return [
        e
        for campaign, (visitors, _) in EDGES.items()
        for visitor, at, script in visitors
        for e in scripted(SITE, visitor, campaign, at, script)
    ]


EVENTS_OF = {SITE: TRAFFIC[SITE] + edge_events(), ZONED: TRAFFIC[ZONED]}
DAY_BOUNDS = {
    site: (utc_at(FIRST, 0, zone=zone), utc_at(LAST + timedelta(days=1), 0, zone=zone)) for site, zone in ZONES.items()
}


@pytest.fixture(scope="module")
def built(store):
    """The traffic stored, its visits built up to MARK (the watermark)."""
    clean(store)
    store.command("TRUNCATE TABLE beacon.visit_sequences")
    add_site(store, SITE)
    add_site(store, ZONED, timezone_name=TORONTO)
    rows = "\n".join(json.dumps(e.row()) for events in EVENTS_OF.values() for e in events)
    store.insert_json_rows("beacon.events", rows.encode())
    build_closed_visits(store, MARK + timedelta(minutes=30) + LATENESS, LATENESS)
    assert watermark(store) == MARK
    yield store
    clean(store)
    store.command("TRUNCATE TABLE beacon.visit_sequences")  # as a new store: no visit without its sequence


def ask(store, site: str, name: str, source: str | None, filters: str = "") -> tuple[list[int], int, str]:
    lo, hi = DAY_BOUNDS[site]
    parsed = tuple(_filter(f) for f in filters.split(";") if f)
    q = StatsQuery(site, lo, hi, ("visitors",), parsed, source=source, timezone=ZONES[site])
    figures = funnel(store, q, make_funnel(site, name, FUNNELS[site][name]))
    return [s.visitors for s in figures.steps], figures.all_visitors, figures.source


def _filter(text: str) -> Filter:
    for op in ("!=", "==", "~"):
        if op in text:
            prop, _, values = text.partition(op)
            return Filter(prop, op, tuple(values.split("|")))
    raise ValueError(text)


def assert_both_paths(store, site: str, name: str, want: dict, filters: str = "") -> None:
    raw = ask(store, site, name, EVENTS, filters)
    fast = ask(store, site, name, None, filters)
    assert raw[:2] == (want["reached"], want["all_visitors"])
    assert fast[:2] == raw[:2]
    assert raw[2] == EVENTS
    assert fast[2] == (EVENTS if "event:name" in filters else AGGREGATES)


@pytest.mark.parametrize("site,name", [(s, n) for s, funnels in FUNNELS.items() for n in funnels])
def test_each_funnel_agrees_on_both_paths(built, site, name):
    want = expected(EVENTS_OF[site], ZONES[site], FUNNELS[site][name])
    assert want["reached"][-1] > 0
    assert_both_paths(built, site, name, want)


@pytest.mark.parametrize("filters", list(FILTERS))
@pytest.mark.parametrize("name", ["Blog", "Long"])
def test_filters_agree_on_both_paths(built, filters, name):
    visit_keeps, keeps = FILTERS[filters]
    want = expected(EVENTS_OF[SITE], "UTC", FUNNELS[SITE][name], visit_keeps, keeps)
    assert_both_paths(built, SITE, name, want, filters)


@pytest.mark.parametrize("campaign", list(EDGES))
def test_edges_of_the_built_visits(built, campaign):
    """A visit open across the watermark, one built, one cut at midnight, one whose
    paths hold the characters that separate a sequence's entries."""
    want = expected(EVENTS_OF[SITE], "UTC", STEPS, visit_keeps=lambda v: v[0].utm_campaign == campaign)
    assert want["reached"] == EDGES[campaign][1]
    assert_both_paths(built, SITE, "Signup", want, f"visit:utm_campaign=={campaign}")


def test_the_sequences_are_built_and_the_watermark_splits_the_traffic(built):
    ((visits, sequenced, open_after),) = built.rows(
        "SELECT count(), countIf(notEmpty(sequence_names)), countIf(last >= {m:DateTime64(3, 'UTC')}) "
        "FROM beacon.visits",
        {"m": MARK.replace(tzinfo=None)},
    )
    assert visits > 100 and sequenced == visits and open_after == 0
    # Some of the period's traffic is after the watermark: the open visits are read from the events.
    assert any(e.ts >= MARK for e in EVENTS_OF[SITE])


def as_before_the_sequences(store) -> None:
    """The store as the release before 0025 left it (its visits without sequences, as
    its builder wrote them), then migrated: 0025 runs for real."""
    store.command(
        "ALTER TABLE beacon.visits DROP COLUMN sequence_paths, DROP COLUMN sequence_names, DROP COLUMN sequence"
    )
    store.command("DROP TABLE beacon.visit_sequences")
    store.command(f"DELETE FROM {store.mutable('schema_migrations')} WHERE version = 25")
    assert [m.version for m in migrate(store)] == [25]
    assert missing_before(store) == watermark(store)


def test_an_upgraded_store_reads_events_until_its_visits_get_their_sequences(built):
    """Funnels stay exact before, during and after the builder gives the visits their sequences."""
    before = built.rows("SELECT count() FROM beacon.visits")[0][0]
    as_before_the_sequences(built)
    want = {site: expected(EVENTS_OF[site], ZONES[site], FUNNELS[site]["Signup"]) for site in FUNNELS}
    for site in FUNNELS:
        assert_both_paths(built, site, "Signup", want[site])
    steps = 0
    while sequence_older_visits(built):
        steps += 1
        assert steps < 10
    assert missing_before(built) <= min(e.ts for events in EVENTS_OF.values() for e in events)
    ((visits, sequenced),) = built.rows("SELECT count(), countIf(notEmpty(sequence_names)) FROM beacon.visits")
    assert visits == before and sequenced == visits
    for site in FUNNELS:
        assert_both_paths(built, site, "Signup", want[site])
    assert sequence_older_visits(built) is False  # done: a later round does nothing


def test_visits_whose_events_are_gone_keep_no_sequence_and_are_not_cut_again(built):
    """Raw retention shorter than the visits': a visit whose events have expired cannot
    be cut again, so the builder leaves it, and the rest of its day, as they are."""
    expired_before = utc_at(FIRST, 6)
    as_before_the_sequences(built)
    built.command(
        f"DELETE FROM {built.mutable('events')} WHERE ts < {{t:DateTime64(3, 'UTC')}}",
        {"t": expired_before.replace(tzinfo=None)},
    )
    visits = built.rows("SELECT count() FROM beacon.visits")[0][0]
    steps = 0
    while sequence_older_visits(built):
        steps += 1
        assert steps < 10
    assert built.rows("SELECT count() FROM beacon.visits")[0][0] == visits
    floor = missing_before(built)
    assert expired_before < floor <= expired_before + timedelta(days=1)  # the next midnight of the latest zone
    ((unsequenced_from_floor, unsequenced),) = built.rows(
        "SELECT countIf(empty(sequence_names) AND last >= {f:DateTime64(3, 'UTC')}), countIf(empty(sequence_names)) "
        "FROM beacon.visits",
        {"f": floor.replace(tzinfo=None)},
    )
    assert unsequenced_from_floor == 0 and unsequenced > 0
    for site in FUNNELS:
        held = [e for e in EVENTS_OF[site] if e.ts >= expired_before]
        assert_both_paths(built, site, "Signup", expected(held, ZONES[site], FUNNELS[site]["Signup"]))
