"""Objections in the Kafka deployment: the compacted ``privacy.requests`` topic.

A collector (``POST /optout``) or ``beacon privacy optout --kafka`` publishes the
subject's pseudonym as the key (never the raw ID); every worker reads the whole
topic, from the beginning, outside any consumer group, so each of them knows every
objection within a second or so, whichever partitions it processes.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from kafka import KafkaProducer

from streams.follower import follow_topic

log = logging.getLogger("beacon.privacy_requests")

OPTOUT = orjson.dumps({"action": "optout"})


def publish_optouts(producer: KafkaProducer, topic: str, subjects: list[str]) -> None:
    """Blocks until Kafka has the objections (they are rare, and must not be lost)."""
    futures = [producer.send(topic, key=s.encode(), value=OPTOUT) for s in subjects]
    producer.flush(timeout=30)
    for future in futures:
        future.get(timeout=0)


async def follow_optouts(bootstrap: str, topic: str, env, loaded: asyncio.Event | None = None) -> None:
    """Keep ``env.opted_out`` equal to the objections in ``topic``; set ``loaded`` once
    every objection published before the start is in it. Runs until cancelled."""
    await follow_topic(bootstrap, topic, lambda records: apply_optouts(env, records), loaded)


def apply_optouts(env, records: list) -> None:
    records = [m for m in records if m.key]
    if not records:
        return
    added = {m.key.decode() for m in records if m.value}
    withdrawn = {m.key.decode() for m in records if not m.value}
    env.use_objections((env.opted_out | added) - withdrawn)
    log.info("objections loaded", extra={"added": len(added), "total": len(env.opted_out)})
