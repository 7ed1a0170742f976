"""The Faust app: privacy filter (beacons.raw → beacons.clean) and ClickHouse sink.

    privacy.requests ──▶ task objections (every worker reads all of it) ──▶ env.opted_out
    privacy.salts ──▶ task visitor_salts (every worker reads all of it) ──▶ env.salts
    beacons.raw ──▶ agent privacy-filter ──▶ beacons.clean ──▶ agent clickhouse-sink ──▶ ClickHouse
      (micro-batches,   filter_batch() on every beacon,         batches of records,
       full IPs)        the same function as the embedded mode  one INSERT each, dedup by batch id
                    └─▶ beacons.dlq (records that cannot be read, with the reason)

Delivery is at-least-once: Faust commits an offset only after the agent finished the
record (the filter's sends are flushed before the commit; the sink acks a batch only
after its INSERT succeeded). Replays are made harmless downstream by the batch id
(see ``storage.sink.EventSink.write_batches``).

``beacon worker`` runs the filter (and the sink with ``--clickhouse``);
``beacon serve --kafka`` runs only the sink, into the chDB store it owns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from dataclasses import dataclass

import faust

from common import metrics
from common.heap import settle_heap
from common.settings import Settings
from storage.sink import EventSink, encode_rows
from streams.lag import REPORT_EVERY, LagReporter
from streams.privacy_filter import FilterEnv, filter_batch
from streams.privacy_requests import follow_optouts
from streams.records import decode_raw_batch, encode_dead_letter
from streams.salts_topic import KafkaSalts, days_of

log = logging.getLogger("beacon.worker")

SINK_MAX_RECORDS = 500  # × ~100–200 beacons per record: tens of thousands of rows per INSERT


@dataclass(frozen=True)
class Stages:
    filter: bool = True
    sink: EventSink | None = None


def create_app(settings: Settings, env: FilterEnv | None, stages: Stages, partitions: int) -> faust.App:
    app = faust.App(
        settings.group,
        broker=[f"kafka://{host}" for host in settings.kafka.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,  # `beacon topics` creates the topics, with their retention
        topic_disable_leader=True,
        store="memory://",
        datadir=_faust_scratch_dir().name,
        web_enabled=False,
        producer_acks=-1,
        producer_compression_type="zstd",
        producer_max_request_size=4 << 20,
        producer_linger_ms=5,
        broker_max_poll_records=2000,
        consumer_max_fetch_size=8 << 20,
        stream_buffer_maxsize=4096,
        stream_recovery_delay=0.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        worker_redirect_stdouts=False,
    )
    raw = app.topic(settings.topic_raw, key_type=bytes, value_type=bytes)
    clean = app.topic(settings.topic_clean, key_type=bytes, value_type=bytes)
    dlq = app.topic(settings.topic_dlq, key_type=bytes, value_type=bytes)

    lag = LagReporter(app)

    @app.timer(REPORT_EVERY)
    async def consumer_lag() -> None:
        await lag.report()

    if stages.filter:
        assert env is not None

        # A (re)started worker must not filter its backlog before it knows every
        # objection already made: their events would be stored.
        objections_loaded = asyncio.Event()

        @app.task
        async def objections() -> None:
            await follow_optouts(settings.kafka, settings.topic_requests, env, objections_loaded)

        if isinstance(env.salts, KafkaSalts):
            salts = env.salts

            @app.task
            async def visitor_salts() -> None:
                await salts.follow()

        @app.agent(raw, name="privacy-filter")
        async def privacy_filter(stream):
            await objections_loaded.wait()
            # Faust has started. With young objects collected every 20,000 allocations,
            # garbage collection fell from ~6 % to ~1 % of the worker's CPU (docs/benchmarks.md).
            settle_heap(young_threshold=20_000)
            async for key, value in stream.items():
                await filter_record(key, value, env, clean, dlq)

    if stages.sink is not None:
        sink = stages.sink

        @app.agent(clean, name="clickhouse-sink")
        async def clickhouse_sink(stream):
            loop = asyncio.get_running_loop()
            async for events in stream.take_events(SINK_MAX_RECORDS, within=settings.flush_interval):
                batches = [(e.key.decode(), e.value) for e in events]
                # Blocking insert (retried until it succeeds) in a thread; the events
                # are acked, and their offsets become committable, only afterwards.
                await loop.run_in_executor(None, sink.write_batches, batches)

    return app


@functools.cache
def _faust_scratch_dir() -> tempfile.TemporaryDirectory:
    """Faust makes a "<app id>-data" directory, by default in the working directory,
    even without tables; it holds nothing here, so it is a temporary one, removed
    when the process exits."""
    return tempfile.TemporaryDirectory(prefix="beacon-faust-")


async def filter_record(key: bytes | None, value: bytes, env: FilterEnv, clean, dlq) -> None:
    batch_key = key or b""
    try:
        batch = decode_raw_batch(value)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        metrics.worker_dead_letters.labels("undecodable").inc()
        await dlq.send(
            key=batch_key, value=encode_dead_letter(batch_key.decode(errors="replace"), "undecodable", str(exc), value)
        )
        return
    if isinstance(env.salts, KafkaSalts):  # the filter itself cannot wait for Kafka
        await env.salts.prepare(days_of(e.context.received_at for e in batch.events))
    try:
        kept, _dropped, actions = filter_batch(batch.events, env)
    except Exception as exc:  # a bug must not stop the stream: park the record, say why
        log.exception("filter failed; record sent to the dead-letter topic", extra={"error": type(exc).__name__})
        metrics.worker_dead_letters.labels("filter_error").inc()
        await dlq.send(key=batch_key, value=encode_dead_letter(batch.batch_id, "filter_error", repr(exc), value))
        return
    metrics.count_actions(actions)
    metrics.worker_events_filtered.inc(len(batch.events))
    for event in kept:
        event.batch_id = batch.batch_id
    # An empty value still marks the batch as done (every beacon was a bot).
    await clean.send(key=batch.batch_id.encode(), value=encode_rows(kept))
