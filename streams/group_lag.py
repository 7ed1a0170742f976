"""``beacon_consumer_group_lag{group,topic,partition}``: a consumer group's lag as the
broker sees it (end offset − the group's committed offset), measured from OUTSIDE the
group; and ``beacon_consumer_group_committed_offset``, whose rate is what the group
consumes.

Each worker reports its own lag (``streams.lag``, ``beacon_consumer_lag``), but a
worker that stopped reports nothing, which is exactly when the lag grows. So a
process that outlives the workers (``beacon serve --kafka``, or a collector) also
asks the broker, every ``REPORT_EVERY`` seconds, how far each group is behind on
its topics; a partition the group never committed on counts from its first offset.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings

from common import metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

log = logging.getLogger("beacon.lag")

REPORT_EVERY = 5.0


class GroupLag:
    """Reports the lag of ``groups`` (group id → the topics it consumes) in a thread."""

    def __init__(self, bootstrap: str, groups: dict[str, list[str]], every: float = REPORT_EVERY):
        self.bootstrap = bootstrap
        self.groups = groups
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-lag", daemon=True)
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None
        self._reported_at = float("-inf")  # monotonic time of the last complete report

    def ok(self) -> bool:
        """The broker answered within the last three rounds (a /readyz check)."""
        return time.monotonic() - self._reported_at < 3 * self.every

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.report()
            except Exception as exc:  # the broker away: said, and asked again next round
                log.warning("consumer group lag not reported", extra={"error": type(exc).__name__})
                self._close()
            if self._stop.wait(self.every):
                break
        self._close()

    def report(self) -> None:
        admin, consumer = self._clients()
        for group, topics in self.groups.items():
            partitions = [
                TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                continue
            committed = admin.list_group_offsets({group: partitions}).get(group, {})
            ends = consumer.end_offsets(partitions)
            starts = consumer.beginning_offsets(partitions)
            for tp in partitions:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts[tp]
                labels = (group, tp.topic, str(tp.partition))
                metrics.consumer_group_lag.labels(*labels).set(max(0, ends[tp] - position))
                metrics.consumer_group_committed.labels(*labels).set(position)
        self._reported_at = time.monotonic()

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        if self._admin is None or self._consumer is None:
            servers = self.bootstrap.split(",")
            self._admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10_000)
            # Never create a topic by asking about it: `beacon topics` makes them, with their settings.
            self._consumer = KafkaConsumer(
                bootstrap_servers=servers,
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=10_000,
            )
        return self._admin, self._consumer

    def _close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing a client of a broker that went away
                    pass
        self._admin = self._consumer = None
