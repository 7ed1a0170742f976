"""Dead letters in a Kafka deployment: topic ``beacons.dlq`` (retention ≤ 24 h).

Two stages write to it, keyed by the batch id:

    privacy filter   a raw record it could not read or filter (``streams.worker``):
                     {"batch_id", "reason", "error", "record": base64 of the RAW record}
                     reasons undecodable, filter_error. Raw: full IPs, never shown as is.
    sink             one clean row the store refused (``DeadLetterTopic``, for
                     ``storage.sink.EventSink``):
                     {"stage": "sink", "batch_id", "reason", "error", "row": the clean row}
                     reasons constraint_violated, value_refused.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson
from kafka import KafkaProducer

from storage.dead_letters import DeadLetter

SINK_STAGE = "sink"


class DeadLetterTopic:
    """The sink's ``DeadLetters`` in Kafka mode. ``put`` returns once the broker
    acknowledged every letter (it runs in the sink's thread, before the batch is acked)."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=5,
            max_request_size=4 << 20,
            request_timeout_ms=10_000,
        )

    def put(self, letters: list[DeadLetter]) -> None:
        futures = [
            self._producer.send(self.topic, key=letter.batch_id.encode(), value=encode_sink_letter(letter))
            for letter in letters
        ]
        self._producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=0)  # raises the delivery error, if any: the sink retries

    def close(self) -> None:
        self._producer.close(timeout=5)


def encode_sink_letter(letter: DeadLetter) -> bytes:
    return orjson.dumps(
        {
            "stage": SINK_STAGE,
            "batch_id": letter.batch_id,
            "reason": letter.reason,
            "error": letter.error,
            "row": letter.row.decode(errors="replace"),
        }
    )


@dataclass(frozen=True)
class TopicLetter:
    """One record of the dead-letter topic, either kind."""

    partition: int
    offset: int
    timestamp: float  # when the broker took it
    batch_id: str
    reason: str
    error: str
    row: bytes | None  # a sink letter: the clean row
    raw_record: bytes | None  # a filter letter: the raw record (full IPs)

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"


def decode_letter(partition: int, offset: int, timestamp_ms: int, value: bytes) -> TopicLetter:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return TopicLetter(partition, offset, timestamp_ms / 1000, "", "unreadable_letter", "", None, None)
    row = data.get("row")
    record = data.get("record")
    return TopicLetter(
        partition,
        offset,
        timestamp_ms / 1000,
        str(data.get("batch_id", "")),
        str(data.get("reason", "")),
        str(data.get("error", "")),
        row.encode() if isinstance(row, str) else None,
        base64.b64decode(record) if isinstance(record, str) else None,
    )
