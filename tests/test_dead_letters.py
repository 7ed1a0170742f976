"""Rows the store refuses never stall storage: the refused rows of a batch become
dead letters, the rest is stored, an outage is still waited out, and `beacon dlq
replay` stores a letter once its cause is fixed, exactly once. Real refusals on the
real engine: a CHECK constraint and a narrower column, added by the test (schema
drift), against values the beacon schema accepts."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager

import httpx
import pytest

from beacon import dlq
from common import metrics
from schemas.events import Beacon, RawEvent, RequestContext
from schemas.validation import validate_beacon
from storage import dead_letters
from storage.sink import EventSink, encode_rows
from streams.geo import GeoLookup
from streams.privacy_filter import FilterEnv, filter_batch
from tests.server import BeaconServer, cli

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
CLIENT_IP = "203.0.113.77"
REFUSED_PATH = "/refused-by-the-store"
CONSTRAINT = f"ALTER TABLE beacon.events ADD CONSTRAINT test_refused CHECK path != '{REFUSED_PATH}'"
NARROW_SCREEN = "ALTER TABLE beacon.events MODIFY COLUMN screen LowCardinality(FixedString(9))"
WIDE_SCREEN = "ALTER TABLE beacon.events MODIFY COLUMN screen LowCardinality(String)"


def _beacon(i: int, path: str = "/ok", screen: str = "1920x1080") -> dict:
    return {
        "site": "example.com",
        "url": f"https://example.com{path}?n={i}&email=me@mail.com",
        "screen": screen,
        "props": {"n": i},
    }


def _clean_events(beacons: list[dict], batch_id: str = ""):
    """What the privacy filter makes of these beacons (each valid by the beacon schema)."""
    valid = [validate_beacon(b, frozenset({"example.com"})) for b in beacons]
    assert all(isinstance(b, Beacon) for b in valid), valid
    raws = [RawEvent(str(uuid.uuid4()), b, RequestContext(time.time(), CLIENT_IP, CHROME)) for b in valid]
    kept, dropped, _ = filter_batch(raws, FilterEnv(GeoLookup(None)))
    assert not dropped
    for event in kept:
        event.batch_id = batch_id
    return kept


@pytest.fixture
def clean(store):
    store.command("TRUNCATE TABLE beacon.events")
    store.command("TRUNCATE TABLE beacon.dead_letters")
    yield store
    store.command("ALTER TABLE beacon.events DROP CONSTRAINT IF EXISTS test_refused")
    store.command(WIDE_SCREEN)
    store.command("TRUNCATE TABLE beacon.events")
    store.command("TRUNCATE TABLE beacon.dead_letters")


def _stored_ids(store) -> Counter:
    return Counter(event_id for (event_id,) in store.rows("SELECT toString(event_id) FROM beacon.events"))


def _dead_letter_count(reason: str) -> float:
    found = re.search(
        rf'^beacon_sink_dead_letters_total{{reason="{reason}"}} (\S+)$', metrics.exposition().decode(), re.M
    )
    return float(found.group(1)) if found else 0.0


def test_refused_rows_become_dead_letters_and_the_rest_of_the_batch_is_stored(clean):
    store = clean
    refused_at = set(random.Random(15).sample(range(2000), 5))
    events = _clean_events([_beacon(i, REFUSED_PATH if i in refused_at else "/ok") for i in range(2000)])
    refused_ids = {events[i].event_id for i in refused_at}
    store.command(CONSTRAINT)
    counted = _dead_letter_count("constraint_violated")

    EventSink(store).write(events)

    assert _stored_ids(store) == Counter({e.event_id for e in events} - refused_ids)
    letters = dead_letters.letters(store)
    assert {letter.event_id for letter in letters} == refused_ids
    assert {letter.reason for letter in letters} == {"constraint_violated"}
    assert all("test_refused" in letter.error for letter in letters)
    assert _dead_letter_count("constraint_violated") == counted + 5
    # The letter is the clean row: the filter's output, not what the page sent.
    row = json.loads(letters[0].row)
    assert row["url"].endswith(REFUSED_PATH) and "email" not in row["url"] and row["ip_truncated"] == "203.0.113.0"
    every_value = store.raw_query("SELECT * FROM beacon.dead_letters", "TabSeparated").decode()
    assert CLIENT_IP not in every_value and "me@mail.com" not in every_value


def test_replay_after_the_fix_stores_each_letter_once(clean):
    store = clean
    events = _clean_events([_beacon(i, REFUSED_PATH if i % 50 == 7 else "/ok") for i in range(300)])
    refused_ids = {e.event_id for e in events if e.path == REFUSED_PATH}
    store.command(CONSTRAINT)
    EventSink(store).write(events)

    still = dlq.replay_table(store, (), ())  # the cause is still there: nothing stored, letters kept
    assert set(still.refused) == refused_ids and not still.stored
    assert {letter.event_id for letter in dead_letters.letters(store)} == refused_ids

    store.command("ALTER TABLE beacon.events DROP CONSTRAINT test_refused")
    done = dlq.replay_table(store, ("constraint_violated",), ())
    assert set(done.stored) == refused_ids and not done.refused
    assert _stored_ids(store) == Counter({e.event_id for e in events})  # every event, once
    assert dead_letters.letters(store) == []
    replayed = store.rows("SELECT DISTINCT batch_id FROM beacon.events WHERE path = {p:String}", {"p": REFUSED_PATH})
    assert sorted(b for (b,) in replayed) == sorted(f"dlq-{i}" for i in refused_ids)

    # A replay that stopped after storing, before forgetting its letters, is run again:
    # nothing is stored twice.
    one = next(e for e in events if e.path == REFUSED_PATH)
    dead_letters.DeadLetterTable(store).put([dead_letters.DeadLetter(encode_rows([one]), "constraint_violated", "")])
    again = dlq.replay_table(store, (), ())
    assert again.already_stored == [one.event_id] and not again.stored
    assert _stored_ids(store) == Counter({e.event_id for e in events})
    assert dead_letters.letters(store) == []


def test_a_value_the_narrower_column_refuses_is_set_aside(clean):
    """Schema drift: `screen` narrowed to FixedString(9); 12345x12345 is a valid screen."""
    store = clean
    events = _clean_events([_beacon(i, screen="12345x12345" if i == 3 else "1920x1080") for i in range(40)])
    store.command(NARROW_SCREEN)
    EventSink(store).write(events)
    assert _stored_ids(store) == Counter({e.event_id for e in events} - {events[3].event_id})
    (letter,) = dead_letters.letters(store)
    assert (letter.event_id, letter.reason) == (events[3].event_id, "value_refused")
    assert "FixedString(9)" in letter.error


def test_kafka_batches_replayed_after_a_crash_store_nothing_twice(clean):
    """write_batches: a batch stored in part (its sink stopped mid-split) is completed
    by its replay, by event id; a batch stored whole is skipped."""
    store = clean
    first = _clean_events([_beacon(i, REFUSED_PATH if i == 2 else "/ok") for i in range(10)], batch_id="batch-1")
    second = _clean_events([_beacon(i) for i in range(10)], batch_id="batch-2")
    batches = [("batch-1", encode_rows(first)), ("batch-2", encode_rows(second))]
    store.command(CONSTRAINT)
    sink = EventSink(store)
    assert sink.write_batches(batches) == 19
    # Crash before the ack: Kafka delivers both records again.
    assert sink.write_batches(batches) == 0
    assert _stored_ids(store) == Counter({e.event_id for e in first + second} - {first[2].event_id})
    # The refused row was refused again: two letters, one event.
    assert [letter.event_id for letter in dead_letters.letters(store)] == [first[2].event_id] * 2
    store.command("ALTER TABLE beacon.events DROP CONSTRAINT test_refused")
    assert len(dlq.replay_table(store, (), ()).stored) == 1
    assert _stored_ids(store) == Counter({e.event_id for e in first + second})


def test_an_outage_is_waited_out_not_dead_lettered(clean):
    store = clean
    events = _clean_events([_beacon(i) for i in range(100)])
    store.command("DETACH TABLE beacon.events")
    sink = EventSink(store)
    writer = threading.Thread(target=sink.write, args=(events,))
    try:
        writer.start()
        deadline = time.monotonic() + 10
        while sink.healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sink.healthy and "beacon_sink_retrying 1.0" in metrics.exposition().decode()
        assert writer.is_alive()  # still retrying: an outage is not the rows' fault
    finally:
        store.command("ATTACH TABLE beacon.events")
    writer.join(30)
    assert not writer.is_alive() and sink.healthy
    assert _stored_ids(store) == Counter({e.event_id for e in events})
    assert dead_letters.letters(store) == []
    assert "beacon_sink_retrying 0.0" in metrics.exposition().decode()


@contextmanager
def _server(tmp_path):
    with BeaconServer(tmp_path / "data") as server:
        cli("sites", "add", "example.com", "--data-dir", str(server.data_dir))
        yield server


def test_beacon_dlq_list_show_replay_on_a_running_server(tmp_path):
    """The whole way: beacons over HTTP, a constraint added through `beacon query`,
    `beacon dlq` through the server's control socket."""
    with _server(tmp_path) as server:
        data = ["--data-dir", str(server.data_dir)]
        cli("query", "--write", *data, CONSTRAINT)
        paths = [REFUSED_PATH if i % 25 == 0 else f"/p/{i}" for i in range(200)]
        with httpx.Client(timeout=10) as http:
            for start in range(0, len(paths), 20):
                body = [_beacon(i, path) for i, path in enumerate(paths[start : start + 20], start)]
                answer = http.post(
                    f"{server.url}/collect",
                    content=json.dumps(body),
                    headers={"Content-Type": "text/plain", "User-Agent": CHROME},
                )
                assert answer.json() == {"accepted": 20}
        refused = paths.count(REFUSED_PATH)
        _wait(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] == len(paths) - refused)

        listed = cli("dlq", "list", *data).stdout.splitlines()
        assert listed[0] == "reason\tletters\toldest\tnewest"
        assert listed[1].split("\t")[:2] == ["constraint_violated", str(refused)]
        shown = [json.loads(line) for line in cli("dlq", "show", *data, "--limit", "3").stdout.splitlines()]
        assert len(shown) == 3 and {s["row"]["path"] for s in shown} == {REFUSED_PATH}
        assert "127.0.0.1" not in json.dumps(shown)  # the client's address: truncated in every row

        kept = cli("dlq", "replay", *data, "--all", check=False)
        assert kept.returncode == 1 and f"still refused {refused}" in kept.stdout
        cli("query", "--write", *data, "ALTER TABLE beacon.events DROP CONSTRAINT test_refused")
        assert f"stored {refused}, already stored 0, still refused 0" in cli("dlq", "replay", *data, "--all").stdout
        assert "stored 0" in cli("dlq", "replay", *data, "--all").stdout
        counts = server.query(
            "SELECT count() AS n, uniqExact(event_id) AS u, countIf(path = '/refused-by-the-store') AS r "
            "FROM beacon.events"
        )[0]
        assert counts == {"n": len(paths), "u": len(paths), "r": refused}
        assert cli("dlq", "list", *data).stdout.splitlines() == ["no dead letters"]


def _wait(done, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_raw_record_of_the_dead_letter_topic_is_shown_only_as_the_filter_makes_it():
    from streams.records import RawBatch, encode_raw_batch

    beacons = [
        Beacon.from_valid(
            {
                "site": "example.com",
                "url": "https://example.com/a?email=me@mail.com",
                "device_id": "dev-123-unconsented",
                "mac": "00:11:22:33:44:55",
            }
        ),
        Beacon.from_valid({"site": "example.com", "url": "https://example.com/b"}),
    ]
    record = encode_raw_batch(
        RawBatch(
            "b-1",
            [RawEvent(str(uuid.uuid4()), b, RequestContext(time.time(), CLIENT_IP, CHROME)) for b in beacons]
            + [RawEvent(str(uuid.uuid4()), beacons[1], RequestContext(time.time(), CLIENT_IP, "curl/8.0"))],
        )
    )
    assert CLIENT_IP.encode() in record  # what the topic holds

    shown = dlq.filtered_raw_record(record, id_key=b"k" * 32)
    assert (shown["beacons"], shown["dropped"]) == (3, 1)  # curl: a bot, dropped as the filter would
    assert [row["path"] for row in shown["rows"]] == ["/a", "/b"]
    text = json.dumps(shown)
    for raw in (CLIENT_IP, "me@mail.com", "dev-123-unconsented", "00:11:22:33:44:55", "curl"):
        assert raw not in text
    assert dlq.filtered_raw_record(b'{"ip": "198.51.100.99", "garb', None) == {"raw_bytes": 29}
