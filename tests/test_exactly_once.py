"""Exactly once by ClickHouse itself: an INSERT the sink repeats with the same
deduplication token is dropped by the engine, in beacon.events and in the table its
materialized view fills, even when the sink's own look-up of stored batch ids did
not see the first INSERT (two sinks after a rebalance, a retry racing a slow INSERT).
The look-up is switched off here to show that the engine alone holds."""

from __future__ import annotations

import threading
from collections import Counter
from unittest.mock import patch

import pytest

from storage import sink as sink_module
from storage.sink import EventSink, batches_token, encode_rows
from tests.test_dead_letters import CONSTRAINT, REFUSED_PATH, _beacon, _clean_events, _stored_ids, clean  # noqa: F401


@pytest.fixture
def blind_lookup(monkeypatch):
    """The sink's look-up finds nothing stored, as when two sinks ask at once."""
    monkeypatch.setattr(sink_module, "stored_batch_rows", lambda store, batch_ids, since: {})


def _hourly_pageviews(store) -> int:
    ((n,),) = store.rows("SELECT sum(pageviews) FROM beacon.events_hourly")
    return int(n)


def test_the_same_batches_inserted_twice_are_stored_once_whatever_their_order(clean, blind_lookup):
    store = clean
    store.command("TRUNCATE TABLE beacon.events_hourly")
    first = _clean_events([_beacon(i) for i in range(50)], batch_id="batch-a")
    second = _clean_events([_beacon(i) for i in range(30)], batch_id="batch-b")
    sink = EventSink(store)
    assert sink.write_batches([("batch-a", encode_rows(first)), ("batch-b", encode_rows(second))]) == 80
    # Delivered again, in the other order, and the look-up missed it: the token is the same.
    sink.write_batches([("batch-b", encode_rows(second)), ("batch-a", encode_rows(first))])
    assert _stored_ids(store) == Counter({e.event_id for e in first + second})
    assert _hourly_pageviews(store) == 80  # the view's block was dropped with its source's


def test_other_batches_are_not_taken_for_a_repeat(clean, blind_lookup):
    """The token names the batches, not a hash of a few rows: another batch with the
    same rows' content (new event ids) is stored."""
    store = clean
    one = _clean_events([_beacon(i) for i in range(10)], batch_id="batch-1")
    two = _clean_events([_beacon(i) for i in range(10)], batch_id="batch-2")
    sink = EventSink(store)
    sink.write_batches([("batch-1", encode_rows(one))])
    sink.write_batches([("batch-2", encode_rows(two))])
    assert sum(_stored_ids(store).values()) == 20
    assert batches_token(["batch-1"], []) != batches_token(["batch-2"], [])


def test_a_split_run_again_stores_no_half_twice(clean, blind_lookup):
    """A batch with a refused row is split in halves, each with its own token; the
    same batch written again (its sink stopped before Kafka had the offsets, the
    look-up blind) stores none of its halves a second time."""
    store = clean
    events = _clean_events([_beacon(i, REFUSED_PATH if i == 5 else "/ok") for i in range(40)], batch_id="split")
    store.command(CONSTRAINT)
    sink = EventSink(store)
    assert sink.write_batches([("split", encode_rows(events))]) == 39
    sink.write_batches([("split", encode_rows(events))])
    assert _stored_ids(store) == Counter({e.event_id for i, e in enumerate(events) if i != 5})


def test_an_embedded_insert_retried_after_a_timeout_is_stored_once(clean):
    """write_rows: every retry of one drain sends the drain's token, so an INSERT that
    was stored although its caller saw an error (a timeout) is not stored again."""
    store = clean
    events = _clean_events([_beacon(i) for i in range(25)])
    payload = encode_rows(events)
    store.insert_json_rows("beacon.events", payload, "rows:drain-1")
    EventSink(store).write_rows(payload, len(events), [], token="rows:drain-1")
    assert _stored_ids(store) == Counter({e.event_id for e in events})


def test_two_sinks_racing_on_the_same_batches_store_them_once(clean):
    """A rebalance hands the same clean records to two sinks at the same moment: both
    look up the batch ids before either has inserted (a barrier makes sure of it),
    both insert, and the engine keeps one copy."""
    store = clean
    batches = [
        (f"race-{n}", encode_rows(_clean_events([_beacon(i) for i in range(20)], batch_id=f"race-{n}")))
        for n in range(5)
    ]
    both_looked = threading.Barrier(2)
    look_up = sink_module.stored_batch_rows

    def look_up_then_wait(*args):
        found = look_up(*args)
        both_looked.wait(10)
        return found

    results: list[int] = []
    with patch.object(sink_module, "stored_batch_rows", look_up_then_wait):
        racers = [
            threading.Thread(target=lambda: results.append(EventSink(store).write_batches(batches))) for _ in range(2)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
    assert results == [100, 100]  # each sink believed it stored them
    assert sum(_stored_ids(store).values()) == 100
    assert len(_stored_ids(store)) == 100
