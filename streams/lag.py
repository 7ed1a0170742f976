"""``beacon_consumer_lag{topic,partition}``: how far this process's consumer group is
behind the end of each partition it owns — the first thing to look at when beacons
are slow to become queryable (docs/operations.md)."""

from __future__ import annotations

import logging

import faust

from common import metrics

log = logging.getLogger("beacon.lag")

REPORT_EVERY = 5.0  # seconds; each report asks the broker for the partitions' end offsets


class LagReporter:
    def __init__(self, app: faust.App):
        self.app = app
        self._reported: set = set()  # partitions with a gauge, dropped when reassigned elsewhere

    async def report(self) -> None:
        """Never raises: a metric must not stop the pipeline (Faust ends the worker when
        a timer fails), e.g. while the broker is away or during a rebalance."""
        try:
            await self._report()
        except Exception as exc:
            log.warning("consumer lag not reported", extra={"error": type(exc).__name__})

    async def _report(self) -> None:
        consumer = self.app.consumer
        assigned = consumer.assignment()
        for tp in self._reported - assigned:
            metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self._reported = set(assigned)
        if not assigned:
            return
        ends = await consumer.highwaters(*assigned)
        committed = self.app.monitor.tp_committed_offsets  # Kafka's sense: the next offset to read
        for tp in assigned:
            end = ends.get(tp)
            done = committed.get(tp)
            if done is None:  # nothing committed by this process yet: where it reads from
                done = await consumer.position(tp) or 0
            if end is not None:
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))
