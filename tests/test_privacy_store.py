"""The data-subject rights at the store: export finds exactly the subject's rows,
erasure deletes exactly them from every table that holds them, both are recorded in
privacy_log. Through the ``store`` fixture, so with BEACON_TEST_CLICKHOUSE set they
run on a ClickHouse server too (the HTTP and CLI paths: tests/test_privacy_api.py)."""

from __future__ import annotations

import csv
import io
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
    ((left,),) = store.rows("SELECT count() FROM beacon.events")
    assert left == 300
    logged = store.rows(
        "SELECT action, rows, actor FROM beacon.privacy_log WHERE subject = {s:String} ORDER BY ts", {"s": SUBJECT}
    )
    assert [(a, int(n), actor) for a, n, actor in logged] == [("export", 20, "dpo"), ("erase", 20, "dpo")]


FORMULAS = {
    "name": '=HYPERLINK("https://evil.example","open")',
    "path": "+cmd|' /C calc'!A0",
    "referrer": "@SUM(1)",
    "utm_term": "-2+3",
    "utm_content": "\t=1",
    "utm_source": "plain text",
}


def test_csv_export_neutralises_formulas_and_jsonl_keeps_the_exact_values(events_table):
    """A spreadsheet runs a cell starting with =, +, -, @ (or a tab, a CR) even when
    quoted: the CSV prefixes an apostrophe, as the dashboard's CSV does; the JSONL and
    the manifest say what was done and keep the value."""
    store = events_table
    store.command("TRUNCATE TABLE beacon.dead_letters")
    (event,) = _clean_events([_beacon(1, "/x")])
    event.device_id = SUBJECT
    for field, value in FORMULAS.items():
        setattr(event, field, value)
    EventSink(store).write([event])

    done = export(store, SUBJECT, "dpo")
    (row,) = [json.loads(line) for line in done.files["events.jsonl"].decode().splitlines()]
    assert {field: row[field] for field in FORMULAS} == FORMULAS
    (cells,) = csv.DictReader(io.StringIO(done.files["events.csv"].decode()))
    expected = {field: value if value == "plain text" else "'" + value for field, value in FORMULAS.items()}
    assert {field: cells[field] for field in FORMULAS} == expected
    assert cells["site"] == "example.com" and cells["event_id"] == row["event_id"]
    assert not any(cell[:1] in "=+-@\t\r" for cell in cells.values() if cell), cells
    assert "apostrophe" in done.manifest()["csv"] and ".jsonl" in done.manifest()["csv"]
