"""``beacon dlq list|show|replay``: the dead letters, and storing them after a fix.

Two places hold them. The embedded store: ``beacon.dead_letters`` (rows the store
refused; ``storage.dead_letters``). A Kafka deployment: the topic ``beacons.dlq``
(``streams.dead_letter_topic``): rows the store refused, and raw records the
privacy filter could not read or filter.

What is shown is clean: a refused row is stored clean already; a raw record (full
IPs, raw IDs) is shown only as the privacy filter's output for it, or as a count
when the filter cannot read it.

Replay stores each letter at most once, by the sink's rule. A refused row is one row
of a batch whose other rows were stored, so its batch id cannot tell whether IT was:
replay skips event ids already stored (the rule the sink applies to a batch stored
in part), and the row goes in with the batch id ``dlq-<event id>``, which the sink's
batch-id lookup then finds when the same letter is replayed through Kafka again. A
raw record goes back to ``beacons.raw`` under its own batch id, which the sink skips
if that batch was stored meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import orjson

from storage import dead_letters
from storage.clickhouse import Store
from storage.dead_letters import refusal_reason, row_fields
from storage.sink import EVENTS_TABLE, stored_event_ids
from streams.dead_letter_topic import TopicLetter, decode_letter
from streams.geo import GeoLookup
from streams.privacy_filter import FilterConfig, FilterEnv, filter_batch
from streams.records import decode_raw_batch

REPLAY_CHUNK = 500  # rows per INSERT of a replay
REPLAYABLE_RAW_REASONS = ("filter_error",)  # a bug since fixed; an undecodable record stays undecodable


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    letters: int
    oldest: float  # epoch seconds
    newest: float


@dataclass
class Replayed:
    stored: list[str] = field(default_factory=list)  # event ids stored now (embedded) or letter ids sent (Kafka)
    already_stored: list[str] = field(default_factory=list)  # skipped: stored before
    refused: dict[str, str] = field(default_factory=dict)  # id → the store's error: the cause is still there
    not_replayable: dict[str, str] = field(default_factory=dict)  # id → why


def replay_batch_id(event_id: str) -> str:
    return f"dlq-{event_id}"


def with_batch_id(row: bytes, batch_id: str) -> bytes | None:
    fields = row_fields(row)
    if not fields.get("event_id"):
        return None
    fields["batch_id"] = batch_id
    return orjson.dumps(fields)


# --- the embedded store: beacon.dead_letters ------------------------------------------------


def table_counts(store: Store) -> list[ReasonCount]:
    return [ReasonCount(*counted) for counted in dead_letters.counts(store)]


def table_sample(store: Store, reasons: tuple[str, ...], ids: tuple[str, ...], limit: int) -> list[dict]:
    return [
        {
            "id": letter.event_id,
            "refused_at": letter.refused_at,
            "reason": letter.reason,
            "error": letter.error,
            "batch_id": letter.batch_id,
            "row": row_fields(letter.row),
        }
        for letter in dead_letters.letters(store, reasons, ids, limit)
    ]


def replay_table(store: Store, reasons: tuple[str, ...], ids: tuple[str, ...]) -> Replayed:
    """Store the chosen letters the store now takes, once; forget those stored."""
    chosen = dead_letters.letters(store, reasons, ids)
    done = Replayed()
    rows: dict[str, bytes] = {}
    for letter in chosen:
        row = with_batch_id(letter.row, replay_batch_id(letter.event_id))
        if row is None:
            done.not_replayable[letter.event_id] = "not a JSON row with an event id"
        else:
            rows[letter.event_id] = row
    if not rows:
        return done
    since = min(letter.refused_at for letter in chosen) - 86400
    already = stored_event_ids(store, list(rows), since)
    done.already_stored = sorted(already)
    fresh = [(event_id, row) for event_id, row in rows.items() if event_id not in already]
    for start in range(0, len(fresh), REPLAY_CHUNK):
        _insert_chunk(store, fresh[start : start + REPLAY_CHUNK], done)
    dead_letters.delete(store, done.stored + done.already_stored)
    return done


def _insert_chunk(store: Store, chunk: list[tuple[str, bytes]], done: Replayed) -> None:
    """One INSERT (atomic); when refused, one by one, to find those the store still refuses."""
    try:
        _insert(store, [row for _, row in chunk])
    except Exception as exc:
        if refusal_reason(exc) is None:
            raise
        if len(chunk) == 1:
            done.refused[chunk[0][0]] = dead_letters.error_text(exc)
        else:
            for one in chunk:
                _insert_chunk(store, [one], done)
        return
    done.stored += [event_id for event_id, _ in chunk]


def _insert(store: Store, rows: list[bytes]) -> None:
    # Through `command`: the control socket of a running server takes it too.
    store.command(f"INSERT INTO {EVENTS_TABLE} FORMAT JSONEachRow\n" + b"\n".join(rows).decode())


# --- a Kafka deployment: beacons.dlq ----------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[TopicLetter]:
    """Every letter in the topic now (its retention is ≤ 24 h), oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None, allow_auto_create_topics=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise LookupError(f"no topic {topic} (create it with `beacon topics`)")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        letters: list[TopicLetter] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                letters += [
                    decode_letter(tp.partition, r.offset, r.timestamp, r.value) for r in records if r.offset < ends[tp]
                ]
        return sorted(letters, key=lambda letter: (letter.timestamp, letter.partition, letter.offset))
    finally:
        consumer.close()


def topic_counts(letters: Iterable[TopicLetter]) -> list[ReasonCount]:
    by_reason: dict[str, list[float]] = {}
    for letter in letters:
        by_reason.setdefault(letter.reason, []).append(letter.timestamp)
    return [ReasonCount(reason, len(times), min(times), max(times)) for reason, times in sorted(by_reason.items())]


def choose(letters: Iterable[TopicLetter], reasons: tuple[str, ...], ids: tuple[str, ...]) -> list[TopicLetter]:
    return [letter for letter in letters if (not reasons or letter.reason in reasons) and (not ids or letter.id in ids)]


def topic_sample(letters: list[TopicLetter], id_key: bytes | None, limit: int) -> list[dict]:
    return [_shown(letter, id_key) for letter in letters[:limit]]


def _shown(letter: TopicLetter, id_key: bytes | None) -> dict:
    shown: dict = {
        "id": letter.id,
        "refused_at": letter.timestamp,
        "reason": letter.reason,
        "error": letter.error,
        "batch_id": letter.batch_id,
    }
    if letter.row is not None:
        shown["row"] = row_fields(letter.row)
    elif letter.raw_record is not None:
        shown.update(filtered_raw_record(letter.raw_record, id_key))
    return shown


def filtered_raw_record(record: bytes, id_key: bytes | None) -> dict:
    """What may be shown of a raw record: the privacy filter's rows for it (no GeoIP,
    no visitor hash), or only how many beacons it holds when the filter cannot run."""
    try:
        batch = decode_raw_batch(record)
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"raw_bytes": len(record)}
    env = FilterEnv(geo=GeoLookup(None), config=FilterConfig(id_key=id_key) if id_key else FilterConfig())
    try:
        kept, dropped, _actions = filter_batch(batch.events, env)
    except Exception as exc:  # the bug that parked it may still be there
        return {"beacons": len(batch.events), "filter_error": type(exc).__name__}
    return {"beacons": len(batch.events), "dropped": len(dropped), "rows": [asdict(e) for e in kept]}


def replay_topic(bootstrap: str, letters: list[TopicLetter], topic_clean: str, topic_raw: str) -> Replayed:
    """Send the chosen letters back: refused rows to the clean topic (key and batch id
    ``dlq-<event id>``), raw records of a filter error to the raw topic (their own
    batch id). The store's sink skips what it stored already."""
    from collector.kafka_handoff import make_producer

    done = Replayed()
    producer = make_producer(bootstrap)
    try:
        sends = []
        for letter in letters:
            message = _replay_message(letter, topic_clean, topic_raw)
            if isinstance(message, str):
                done.not_replayable[letter.id] = message
            else:
                sends.append((letter.id, producer.send(message[0], key=message[1], value=message[2])))
        producer.flush(timeout=30)
        for letter_id, future in sends:
            future.get(timeout=0)
            done.stored.append(letter_id)
    finally:
        producer.close(timeout=5)
    return done


def _replay_message(letter: TopicLetter, topic_clean: str, topic_raw: str) -> tuple[str, bytes, bytes] | str:
    if letter.row is not None:
        event_id = str(row_fields(letter.row).get("event_id", ""))
        row = with_batch_id(letter.row, replay_batch_id(event_id))
        if row is None:
            return "not a JSON row with an event id"
        return topic_clean, replay_batch_id(event_id).encode(), row
    if letter.raw_record is not None and letter.reason in REPLAYABLE_RAW_REASONS:
        return topic_raw, letter.batch_id.encode(), letter.raw_record
    return f"{letter.reason or 'this letter'} cannot be replayed: the record would be refused again"


# --- what the command prints -------------------------------------------------------------------


def count_lines(counts: list[ReasonCount]) -> list[str]:
    """A header, then reason, letters, oldest and newest (UTC), tab-separated; or one
    line saying there are none (a lone header reads like a failed command)."""
    if not counts:
        return ["no dead letters"]
    return ["reason\tletters\toldest\tnewest"] + [
        f"{c.reason}\t{c.letters}\t{_utc(c.oldest)}\t{_utc(c.newest)}" for c in counts
    ]


def replay_lines(done: Replayed, sent_to: str | None = None) -> tuple[list[str], list[str]]:
    """(a summary for stdout, one line per letter left behind for stderr)."""
    summary = (
        f"sent {len(done.stored)} letter(s) back to {sent_to}; the sink stores each once"
        if sent_to
        else f"stored {len(done.stored)}, already stored {len(done.already_stored)}"
    )
    summary += f", still refused {len(done.refused)}, not replayable {len(done.not_replayable)}"
    left = [f"still refused\t{i}\t{error}" for i, error in done.refused.items()]
    left += [f"not replayable\t{i}\t{why}" for i, why in done.not_replayable.items()]
    return [summary], left


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
