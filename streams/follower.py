"""Follow a whole Kafka topic from its beginning, outside any consumer group.

Used for the small control topics every worker must read in full, whichever
partitions of the beacon topics it processes: objections (``privacy.requests``)
and the visitor hash's daily salts (``privacy.salts``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def follow_topic(
    bootstrap: str, topic: str, apply: Callable[[list[ConsumerRecord]], None], caught_up: asyncio.Event | None = None
) -> None:
    """Hand every batch of records to ``apply``, in partition order; set ``caught_up``
    once every record that existed at start was applied. Runs until cancelled.
    No group: aiokafka then assigns this consumer every partition of the topic."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        ends: dict | None = None
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            records = [m for part in batches.values() for m in part]
            if records:
                apply(records)
            if caught_up is not None and not caught_up.is_set():
                if ends is None and consumer.assignment():
                    ends = await consumer.end_offsets(list(consumer.assignment()))
                if ends is not None and await _reached(consumer, ends):
                    caught_up.set()
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
