#!/usr/bin/env bash
# Run the test suite with the project's virtualenv (`make test` installs it first).
# Starts the local Kafka broker (deploy/kafka/local.sh) for the Kafka tests and stops
# it afterwards; with KAFKA_BOOTSTRAP set, an existing broker is used instead, and
# BEACON_SKIP_KAFKA=1 skips the Kafka tests, and KAFKA_PROVIDER=testcontainers runs
# them against a broker in Docker (tests/kafka_container.py) instead of the local
# one. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# The style first: lint (with import order) and format, configured in pyproject.toml.
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/ruff" format --check --quiet .

if [[ "${BEACON_SKIP_KAFKA:-}" != 1 && -z "${KAFKA_BOOTSTRAP:-}" && "${KAFKA_PROVIDER:-local}" == testcontainers ]]; then
  # Where a Docker engine is reachable: the same tests against testcontainers' Kafka.
  bootstrap_file=$(mktemp "${TMPDIR:-/tmp}/beacon-kafka-container.XXXXXX")
  "$VENV/bin/python" tests/kafka_container.py "$bootstrap_file" &
  container_pid=$!
  trap 'kill $container_pid 2>/dev/null; wait $container_pid 2>/dev/null; rm -f "$bootstrap_file"' EXIT
  until [[ -s "$bootstrap_file" ]]; do
    kill -0 $container_pid 2>/dev/null || { echo "kafka-container: failed to start (is a Docker engine reachable?)" >&2; exit 1; }
    sleep 1
  done
  export KAFKA_BOOTSTRAP=$(cat "$bootstrap_file")
elif [[ "${BEACON_SKIP_KAFKA:-}" != 1 && -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  # Free ports (client, controller) unless given: a fixed one can be taken on a shared host.
  if [[ -z "${KAFKA_PORT:-}" ]]; then
    read -r KAFKA_PORT KAFKA_CONTROLLER_PORT < <("$VENV/bin/python" -c 'from tests.server import free_port
client = free_port()
print(client, next(port for port in iter(free_port, None) if port != client))')
    export KAFKA_CONTROLLER_PORT
  fi
  export KAFKA_PORT
  export KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/beacon-test-kafka.XXXXXX")}
  export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
  trap 'bash deploy/kafka/local.sh stop >/dev/null; rm -rf "$KAFKA_DATA_DIR"' EXIT
  bash deploy/kafka/local.sh start
fi

# Two pytest workers by default (BEACON_TEST_WORKERS, 0 for one process): the suite
# waits on brokers, servers and browsers as much as it computes. A test file runs
# whole on one worker (--dist loadfile), so a module's fixtures are made once.
workers=${BEACON_TEST_WORKERS:-2}
parallel=()
if [[ "$workers" != 0 ]]; then
  parallel=(-n "$workers" --dist loadfile)
fi
"$VENV/bin/python" -m pytest "${parallel[@]}" "$@"
