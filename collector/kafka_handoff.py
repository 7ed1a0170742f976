"""Collector → Kafka: micro-batches, spooled on disk, produced with kafka-python.

    submit() ──▶ micro-batch (≤ N beacons, ≤ linger ms) ──▶ spool (disk) ──▶ producer ──▶ beacons.raw
     HTTP loop        batcher thread                          sender thread     acks=all, idempotent, lz4

One Kafka record carries a micro-batch (a Faust worker costs about the same per
record whatever it holds). The HTTP answer does not wait for Kafka; the spool is
what makes a 202 safe: a record leaves it only once Kafka acknowledged it, and the
202 waits until its beacons are in the spool (a group commit: the batcher takes
what the requests of one turn of the HTTP loop submitted, or ``batch_events``,
spools it, and their answers go out together).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

from kafka import KafkaProducer
from kafka.errors import KafkaError

from collector.spool import Spool, SpoolFull
from common import metrics
from common.group_commit import GroupCommit
from schemas.events import RawEvent
from streams.records import RawBatch, encode_raw_batch

log = logging.getLogger("beacon.collector.kafka")

MAX_RECORD_BYTES = 900 * 1024  # under Kafka's default 1 MiB message limit


def make_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        linger_ms=5,
        batch_size=1 << 20,
        max_request_size=4 << 20,
        max_block_ms=5_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
        retry_backoff_ms=200,
        reconnect_backoff_max_ms=2_000,
    )


class KafkaHandoff:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        spool: Spool,
        batch_events: int = 200,
        linger_ms: float = 20.0,
        produce_interval_ms: float = 100.0,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.spool = spool
        self.batch_events = batch_events
        self.linger = linger_ms / 1000
        self.produce_interval = produce_interval_ms / 1000
        self._pending: list[RawEvent] = []
        self._commit: GroupCommit | None = None  # the requests of the beacons pending
        self._last_commit: GroupCommit | None = None  # that of the latest submit (the HTTP loop's)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn_ends = False  # the end of this turn of the HTTP loop wakes the batcher
        self._lock = threading.Lock()
        self._batch_ready = threading.Event()
        self._spooled = threading.Event()
        self._closing = threading.Event()  # set by close(); also ends the sender's pause between rounds
        self._stop_sender = False
        self._producer: KafkaProducer | None = None
        self.broker_ok = False
        metrics.spool_bytes.set_function(lambda: self.spool.pending_bytes)
        self._batcher = threading.Thread(target=self._batch_loop, name="micro-batcher", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="kafka-sender", daemon=True)

    # --- the collector's side (Handoff) --------------------------------------------

    def submit(self, events: list[RawEvent]) -> bool:
        if self._closing.is_set() or self.spool.full(margin=64 * 1024):
            return False
        self._loop = self._loop or asyncio.get_running_loop()  # before the batcher can see a commit
        with self._lock:
            self._pending.extend(events)
            if self._commit is None:
                self._commit = GroupCommit()
            self._last_commit = self._commit
            if len(self._pending) >= self.batch_events:
                self._batch_ready.set()
        if not self._turn_ends:
            # The answers wait for the spool: waiting for more beacons than this turn
            # of the loop brings would only hold them.
            self._loop.call_soon(self._end_of_turn)
            self._turn_ends = True
        return True

    def durable(self) -> GroupCommit | None:
        return self._last_commit

    def _end_of_turn(self) -> None:
        self._turn_ends = False
        self._batch_ready.set()

    def ready(self) -> bool:
        return self._sender.is_alive() and not self.spool.full(margin=64 * 1024)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._batcher.start()
        self._sender.start()

    def close(self, timeout: float = 30.0) -> None:
        """Spool what is in memory, then try for ``timeout`` s to deliver the spool.
        What Kafka has not acknowledged by then stays on disk for the next start."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._batch_ready.set()
        self._batcher.join()
        while self.spool.pending_bytes and time.monotonic() < deadline and self._sender.is_alive():
            self._spooled.set()
            time.sleep(0.05)
        self._stop_sender = True
        self._spooled.set()
        self._sender.join(timeout=15)
        if self.spool.pending_bytes:
            log.warning(
                "kafka unreachable at shutdown; batches kept in the spool", extra={"bytes": self.spool.pending_bytes}
            )
        if self._producer is not None:
            self._producer.close(timeout=5)
        self.spool.close()

    # --- batcher: memory → spool ---------------------------------------------------------

    def _batch_loop(self) -> None:
        while True:
            self._batch_ready.wait(self.linger)
            self._batch_ready.clear()
            with self._lock:
                events, self._pending = self._pending, []
                commit, self._commit = self._commit, None
            spooled = all(
                [
                    self._spool(events[start : start + self.batch_events])
                    for start in range(0, len(events), self.batch_events)
                ]
            )
            if commit is not None:
                self._answer(commit, spooled)
            if self._closing.is_set() and not self._pending:
                return

    def _answer(self, commit: GroupCommit, spooled: bool) -> None:
        """The requests of these beacons get their answers (in the HTTP loop's thread)."""
        try:
            self._loop.call_soon_threadsafe(commit.done, spooled)
        except RuntimeError:  # the loop has closed: no request waits any more
            pass

    def _spool(self, events: list[RawEvent]) -> bool:
        """Whether the events are in the spool (False: the collector stopped first)."""
        batch = RawBatch(str(uuid.uuid4()), events)
        value = encode_raw_batch(batch)
        if len(value) > MAX_RECORD_BYTES and len(events) > 1:
            half = len(events) // 2
            return self._spool(events[:half]) & self._spool(events[half:])
        try:
            self.spool.append(batch.batch_id.encode(), value)
        except SpoolFull:
            # A burst larger than submit()'s margin, or the spool's disk is full (then
            # submit() refuses until an append succeeds): these beacons' requests are
            # still waiting, and get 503; their clients keep them and retry.
            return False
        self._spooled.set()
        return True

    # --- sender: spool → Kafka -------------------------------------------------------------

    def _send_loop(self) -> None:
        backoff = 0.2
        try:
            self._connect()
        except (KafkaError, OSError):
            log.warning("kafka unreachable at start; accepting into the spool")
        while not self._stop_sender:
            records = self.spool.read(500)
            if not records:
                self.spool.tidy()
                self._spooled.wait(0.1)
                self._spooled.clear()
                continue
            round_started = time.monotonic()
            try:
                producer = self._producer or self._connect()
                futures = [producer.send(self.topic, key=r.key, value=r.value) for r in records]
                producer.flush(timeout=30)
                for future in futures:
                    future.get(timeout=0)  # raises the delivery error, if any
            except (KafkaError, OSError) as exc:
                self.spool.rewind()
                self.broker_ok = False
                metrics.collector_produce_errors.inc()
                log.warning(
                    "kafka produce failed; will retry from the spool",
                    extra={"error": type(exc).__name__, "retry_in": backoff},
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.spool.commit(records[-1].end)
            self.broker_ok = True
            backoff = 0.2
            metrics.collector_records_produced.inc(len(records))
            # The records are safe in the spool meanwhile. kafka-python costs far more per
            # produce round than per record in it (~2.4 ms of CPU for a round of one
            # 70 KiB record, ~0.8 ms per record in rounds of five), so wait for a fuller round.
            self._closing.wait(self.produce_interval - (time.monotonic() - round_started))

    def _connect(self) -> KafkaProducer:
        self._producer = make_producer(self.bootstrap)  # raises when no broker answers
        self.broker_ok = True
        return self._producer
