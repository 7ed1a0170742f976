"""The Kafka topics, their partitions and retention (``beacon topics``), and the
check every worker makes before it starts."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from common.settings import Settings
from streams.salts_topic import SALT_TOPIC_CONFIG

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicState:
    spec: TopicSpec
    partitions: int | None  # None: missing
    config: dict[str, str]

    def problems(self) -> list[str]:
        if self.partitions is None:
            return ["missing"]
        out = []
        if self.partitions != self.spec.partitions:
            out.append(f"{self.partitions} partitions, expected {self.spec.partitions}")
        out += [
            f"{k}={self.config.get(k)}, expected {v}" for k, v in self.spec.config.items() if self.config.get(k) != v
        ]
        return out


def specs(settings: Settings) -> list[TopicSpec]:
    raw_retention = str(settings.raw_retention_hours * HOUR_MS)
    return [
        TopicSpec(settings.topic_raw, settings.partitions, {"retention.ms": raw_retention, "cleanup.policy": "delete"}),
        TopicSpec(
            settings.topic_clean,
            settings.partitions,
            {"retention.ms": str(settings.clean_retention_days * 24 * HOUR_MS), "cleanup.policy": "delete"},
        ),
        TopicSpec(settings.topic_dlq, settings.partitions, {"retention.ms": raw_retention, "cleanup.policy": "delete"}),
        # Compacted, and objections expire like the data they protect: after 730 days.
        TopicSpec(
            settings.topic_requests,
            settings.partitions,
            {"cleanup.policy": "compact,delete", "retention.ms": str(730 * 24 * HOUR_MS)},
        ),
        # One partition: its total order decides which proposal is a day's salt.
        TopicSpec(settings.topic_salts, 1, SALT_TOPIC_CONFIG),
    ]


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="beacon-admin", request_timeout_ms=15_000)


def describe(admin: KafkaAdminClient, wanted: list[TopicSpec]) -> list[TopicState]:
    existing = set(admin.list_topics())
    present = [s.name for s in wanted if s.name in existing]
    partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(present)} if present else {}
    configs: dict[str, dict[str, str]] = {}
    if present:
        # kafka-python 3: {"topic": {name: {key: {"value": …, …}}}}
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in present])
        for name, entries in result.get("topic", {}).items():
            configs[name] = {key: entry["value"] for key, entry in entries.items()}
    return [TopicState(s, partitions.get(s.name), configs.get(s.name, {})) for s in wanted]


def ensure(admin: KafkaAdminClient, wanted: list[TopicSpec], replication_factor: int) -> list[TopicState]:
    """Create missing topics and set the retention of existing ones; partitions of an
    existing topic are reported, never changed (that would move keys)."""
    states = describe(admin, wanted)
    missing = [s.spec for s in states if s.partitions is None]
    if missing:
        try:
            admin.create_topics(
                [NewTopic(s.name, s.partitions, replication_factor, topic_configs=s.config) for s in missing]
            )
        except TopicAlreadyExistsError:
            pass
    drifted = [
        s.spec
        for s in states
        if s.partitions is not None and any(s.config.get(k) != v for k, v in s.spec.config.items())
    ]
    if drifted:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name, configs=s.config) for s in drifted])
    return _described_once_created(admin, wanted, {s.name for s in missing})


def _described_once_created(
    admin: KafkaAdminClient, wanted: list[TopicSpec], created: set[str], timeout: float = 30.0
) -> list[TopicState]:
    """The topics' states once those just created are seen: the broker answers a create
    before its metadata names the topic, and a busy one can describe it as missing."""
    deadline = time.monotonic() + timeout
    while True:
        states = describe(admin, wanted)
        seen = all(s.partitions is not None for s in states if s.spec.name in created)
        if seen or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


class TopicsNotReady(RuntimeError):
    pass


def check_for_worker(settings: Settings, names: list[str], filtering: bool = False) -> int:
    """Partitions of the worker's source topics, or TopicsNotReady with what to do.
    A filtering worker also reads the objections and the salts topics whole, so they
    must exist, and the salts topic must be as ``beacon topics`` makes it."""
    admin = admin_client(settings.kafka)
    try:
        states = {s.spec.name: s for s in describe(admin, specs(settings))}
    finally:
        admin.close()
    followed = [settings.topic_requests, settings.topic_salts] if filtering else []
    missing = [n for n in names + followed if states[n].partitions is None]
    if missing:
        raise TopicsNotReady(
            f"topics missing: {', '.join(missing)}; create them with `beacon topics --kafka {settings.kafka}`"
        )
    salt_problems = states[settings.topic_salts].problems() if filtering else []
    if salt_problems:
        raise TopicsNotReady(
            f"topic {settings.topic_salts}: {'; '.join(salt_problems)}; "
            f"fix it with `beacon topics --kafka {settings.kafka}`"
        )
    counts = {states[n].partitions for n in names}
    if len(counts) != 1:
        detail = ", ".join(f"{n}: {states[n].partitions}" for n in names)
        raise TopicsNotReady(
            f"source topics must have equal partition counts ({detail}); Faust's own topics use one count"
        )
    return counts.pop()
