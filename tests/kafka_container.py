"""A Kafka broker in Docker through testcontainers, for `tests/run.sh` when
``KAFKA_PROVIDER=testcontainers`` (machines with a Docker engine).

    python tests/kafka_container.py BOOTSTRAP_FILE

starts a single-node KRaft broker configured like ``deploy/kafka/local.sh`` (no
topic auto-creation, no initial rebalance delay, retention checked every 5 s),
writes ``host:port`` to BOOTSTRAP_FILE once it answers, and stops the container on
SIGTERM or SIGINT. Without a reachable Docker engine it fails at once, saying so:
asking for the container and silently getting no Kafka tests would hide it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

IMAGE = os.environ.get("KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")  # Kafka 3.9, KRaft

BROKER_SETTINGS = {
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_LOG_RETENTION_CHECK_INTERVAL_MS": "5000",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
}


def main(bootstrap_file: Path) -> int:
    from testcontainers.community.kafka import KafkaContainer  # only this switch needs it

    container = KafkaContainer(IMAGE).with_kraft()
    for name, value in BROKER_SETTINGS.items():
        container.with_env(name, value)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    container.start(timeout=120)
    try:
        bootstrap_file.write_text(container.get_bootstrap_server())
        print(f"kafka-container: {IMAGE} on {container.get_bootstrap_server()}", flush=True)
        stop.wait()
    finally:
        container.stop()
    print("kafka-container: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
