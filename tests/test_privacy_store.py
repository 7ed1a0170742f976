"""The data-subject rights at the store: export finds exactly the subject's rows,
erasure deletes exactly them from every table that holds them, both are recorded in
privacy_log. Through the ``store`` fixture, so with BEACON_TEST_CLICKHOUSE set they
run on a ClickHouse server too (the HTTP and CLI paths: tests/test_privacy_api.py)."""
from __future__ import annotations

import json

from storage.privacy import count, erase, export
from storage.sink import EventSink
from tests.test_dead_letters import _beacon, _clean_events

SUBJECT = "pseudonym-of-the-subject"


def test_export_then_erase_exactly_the_subjects_rows(events_table):
    store = events_table
    store.command("TRUNCATE TABLE beacon.dead_letters")
    theirs = _clean_events([_beacon(i, "/theirs") for i in range(20)])
    others = _clean_events([_beacon(i, "/others") for i in range(300)])
    for event in theirs:
        event.device_id = SUBJECT
    EventSink(store).write(theirs + others)
    assert count(store, SUBJECT) == 20

    done = export(store, SUBJECT, "dpo", formats=("jsonl",))
    rows = [json.loads(line) for line in done.files["events.jsonl"].decode().splitlines()]
    assert sorted(r["event_id"] for r in rows) == sorted(e.event_id for e in theirs)
    assert {r["path"] for r in rows} == {"/theirs"}

    assert erase(store, SUBJECT, "dpo").rows == 20
    assert count(store, SUBJECT) == 0
    (left,), = store.rows("SELECT count() FROM beacon.events")
    assert left == 300
    logged = store.rows("SELECT action, rows, actor FROM beacon.privacy_log WHERE subject = {s:String} ORDER BY ts",
                        {"s": SUBJECT})
    assert [(a, int(n), actor) for a, n, actor in logged] == [("export", 20, "dpo"), ("erase", 20, "dpo")]
