#!/usr/bin/env bash
# deploy/kafka/local.sh — a single-node KRaft Apache Kafka broker for development and CI.
#
# Usage: deploy/kafka/local.sh start|stop|restart|status|logs
#
#   start    Resolve the Kafka jars with Maven (from Maven Central, first run only),
#            write the broker config, format the storage (first run only), start the
#            broker in the background and wait until it answers Kafka requests.
#            Idempotent: returns 0 at once if our broker is already running and answering.
#            On failure prints the tail of the broker log and exits non-zero.
#   stop     SIGTERM the broker started by `start` (pid file, verified to be that very
#            java process), SIGKILL after KAFKA_STOP_TIMEOUT. Idempotent.
#   restart  stop + start (data is kept).
#   status   Prints "running ..." and exits 0; "stopped" exits 3; a live broker process
#            that does not accept connections (starting / hung) prints "unresponsive"
#            and exits 1.
#   logs     tail -n 100 of the broker log.
#
# Only needs bash, java (17+) and mvn (Maven 3.8+; ~/.m2 may be empty). Works from any cwd.
# The broker's data is kept across stop/start; delete KAFKA_DATA_DIR (after `stop`) to wipe it.
#
# Environment (all optional):
#   KAFKA_PORT             client (PLAINTEXT) port on 127.0.0.1              [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1                [KAFKA_PORT+1]
#   KAFKA_DATA_DIR         pid file, generated server.properties, broker logs (logs/),
#                          partition data (data/)            [${TMPDIR:-/tmp}/beacon-kafka-$KAFKA_PORT]
#   KAFKA_LIB_DIR          where Maven copies the broker's jars
#                          [deploy/kafka/target/lib-<kafka.version from pom.xml>]
#   KAFKA_HEAP_OPTS        broker heap                                       [-Xms128m -Xmx512m]
#   KAFKA_JVM_OPTS         extra broker JVM options                          []
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer          [60]
#   KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL               [30]
#   KAFKA_EXTRA_PROPERTIES path of a file appended to the generated server.properties []
#   KAFKA_CLUSTER_ID       cluster id used when formatting a new data dir    [random]
#   MVN                    Maven command                                     [mvn]
#   MAVEN_ARGS_EXTRA       extra Maven arguments, e.g. "-o" or "-s settings.xml" []
#   JAVA_HOME              if set, $JAVA_HOME/bin/java is used, else java on PATH
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.yaml"

KAFKA_HOST=127.0.0.1
KAFKA_NODE_ID=1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/beacon-kafka-$KAFKA_PORT}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_EXTRA_PROPERTIES="${KAFKA_EXTRA_PROPERTIES:-}"
MVN="${MVN:-mvn}"
MAVEN_ARGS_EXTRA="${MAVEN_ARGS_EXTRA:-}"
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$SCRIPT_DIR/target/lib-$KAFKA_VERSION}"

PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
CONF_FILE="$KAFKA_DATA_DIR/server.properties"
LOG_DIR="$KAFKA_DATA_DIR/logs"
BROKER_LOG="$LOG_DIR/server.log"
BROKER_OUT="$LOG_DIR/kafkaServer.out"
PARTITION_DIR="$KAFKA_DATA_DIR/data"

log() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- process helpers ---------------------------------------------------------------

# Prints the pid from the pid file if that pid is alive AND is the java process running
# kafka.Kafka with *this* data dir's config; prints nothing otherwise.
our_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid cmd
  pid="$(tr -dc '0-9' < "$PID_FILE")"
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # -ww: the whole command line; with COLUMNS set (pytest-xdist's workers set 80) ps
  # cuts it there, the config's path is lost and a running broker looks like none.
  cmd="$(ps -ww -o args= -p "$pid" 2>/dev/null || true)"
  if [[ "$cmd" == *java* && "$cmd" == *" kafka.Kafka $CONF_FILE"* ]]; then
    printf '%s\n' "$pid"
  fi
}

port_open() {  # $1 = port; true if something accepts TCP connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# SIGTERM (Kafka shuts down cleanly), SIGKILL after KAFKA_STOP_TIMEOUT; removes the pid file.
stop_pid() {  # $1 = pid, already verified by our_pid
  local pid="$1" deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then die "process $pid survived SIGKILL"; fi
  fi
  rm -f "$PID_FILE"
}

BROKER_LOG_OFFSET=0  # size of server.log when this start launched the broker

show_log_tail() {  # what the broker wrote since this start launched it
  if [[ -s "$BROKER_OUT" ]]; then
    log "---- last lines of $BROKER_OUT ----"
    tail -n 40 "$BROKER_OUT" >&2 || true
  fi
  if [[ -s "$BROKER_LOG" ]]; then
    log "---- last lines of $BROKER_LOG (this start only) ----"
    tail -c "+$((BROKER_LOG_OFFSET + 1))" "$BROKER_LOG" | tail -n 40 >&2 || true
  fi
}

# --- classpath ---------------------------------------------------------------------

pom_stamp() { cksum < "$POM" | awk '{print $1 "-" $2}'; }

ensure_jars() {
  local stamp_file="$KAFKA_LIB_DIR/.resolved" stamp
  stamp="$(pom_stamp)"
  if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "'$MVN' not found; Maven is needed to fetch the Kafka jars"
  log "resolving Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIB_DIR (first run only) ..."
  local tmp="$KAFKA_LIB_DIR.tmp.$$" mvn_log
  mvn_log="$(dirname "$KAFKA_LIB_DIR")/mvn-resolve.log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # shellcheck disable=SC2086  # MAVEN_ARGS_EXTRA is deliberately word-split
  if ! "$MVN" -q -B $MAVEN_ARGS_EXTRA -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    tail -n 40 "$mvn_log" >&2 || true
    die "Maven could not resolve the Kafka jars (full log: $mvn_log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "Maven ran but no kafka_2.13 jar in $tmp"; }
  printf '%s\n' "$stamp" > "$tmp/.resolved"
  rm -rf "$KAFKA_LIB_DIR"
  mv "$tmp" "$KAFKA_LIB_DIR"
}

# Runs a Kafka tool main class with a small, quick-starting JVM; logs go to tools.log.
run_tool() {
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$LOG_DIR" -Dkafka.log.name=tools.log -Dkafka.log.level=WARN \
    -cp "$KAFKA_LIB_DIR/*" "$@"
}

# --- config + storage --------------------------------------------------------------

write_config() {
  mkdir -p "$LOG_DIR" "$PARTITION_DIR"
  local tmp="$CONF_FILE.tmp.$$"
  cat > "$tmp" <<EOF
# Generated by deploy/kafka/local.sh on every start; edits are overwritten.
# Single-node KRaft: this process is both broker and (the only) controller.
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_NODE_ID@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$PARTITION_DIR

# Topics are created explicitly (by the pipeline's admin code / the tests).
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: every internal topic has one replica; few partitions for a fast start.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Consumer groups form at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0

# Small footprint for a dev / CI box.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=104857600
# Retention is enforced only when this check runs: a short interval lets the tests see
# an expired salt record (privacy.salts) physically deleted within seconds.
log.retention.check.interval.ms=5000
EOF
  if [[ -n "$KAFKA_EXTRA_PROPERTIES" ]]; then
    [[ -f "$KAFKA_EXTRA_PROPERTIES" ]] || die "KAFKA_EXTRA_PROPERTIES=$KAFKA_EXTRA_PROPERTIES: no such file"
    { printf '\n# ---- appended from %s ----\n' "$KAFKA_EXTRA_PROPERTIES"; cat "$KAFKA_EXTRA_PROPERTIES"; } >> "$tmp"
  fi
  mv "$tmp" "$CONF_FILE"
}

# 16 random bytes, base64url without padding: the form Kafka's Uuid uses. Like Kafka's
# Uuid.randomUuid, draw again when it starts with '-', which tools can take for an option
# (1 in 64 ids: it made `kafka-storage format` fail in CI before --cluster-id=ID was used).
random_cluster_id() {
  local id
  while id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; [[ "$id" == -* ]]; do :; done
  printf '%s' "$id"
}

format_storage() {
  if [[ -f "$PARTITION_DIR/meta.properties" ]]; then
    local by
    by="$(cat "$KAFKA_DATA_DIR/formatted-by-kafka-version" 2>/dev/null || true)"
    if [[ -n "$by" && "$by" != "$KAFKA_VERSION" ]]; then
      log "warning: $KAFKA_DATA_DIR was formatted by Kafka $by, starting $KAFKA_VERSION" \
          "(a newer format cannot be read by an older broker: wipe the data dir if start fails)"
    fi
    return 0
  fi
  local cluster_id="${KAFKA_CLUSTER_ID:-$(random_cluster_id)}"
  log "formatting new KRaft storage in $PARTITION_DIR (cluster id $cluster_id) ..."
  if ! run_tool kafka.tools.StorageTool format --config "$CONF_FILE" --cluster-id="$cluster_id" \
        --ignore-formatted > "$LOG_DIR/format.out" 2>&1; then
    cat "$LOG_DIR/format.out" >&2 || true
    die "formatting the storage failed"
  fi
  printf '%s\n' "$KAFKA_VERSION" > "$KAFKA_DATA_DIR/formatted-by-kafka-version"
}

# --- readiness ---------------------------------------------------------------------

# True once the broker answers a Metadata + ApiVersions round trip (what clients do first).
broker_answers() {
  local out
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=8000\n' > "$KAFKA_DATA_DIR/probe.properties"
  out="$(run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
          --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" \
          --command-config "$KAFKA_DATA_DIR/probe.properties" 2>&1)" || return 1
  [[ "$out" == *"(id: $KAFKA_NODE_ID "*"Metadata("* ]]
}

wait_ready() {  # $1 = pid
  local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail
      rm -f "$PID_FILE"
      die "the broker (pid $pid) exited during start-up"
    fi
    if port_open "$KAFKA_PORT" && broker_answers; then
      return 0
    fi
    sleep 0.5
  done
  show_log_tail
  log "the broker (pid $pid) did not answer on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; stopping it"
  stop_pid "$pid"
  die "start-up timed out; full broker log: $BROKER_LOG"
}

# --- commands ----------------------------------------------------------------------

lock() {  # serialise concurrent start/stop for the same data dir, where flock(1) exists
  mkdir -p "$KAFKA_DATA_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$KAFKA_DATA_DIR/.lock"
    flock -w "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 60))" 9 || die "could not lock $KAFKA_DATA_DIR/.lock"
  fi
}

cmd_start() {
  lock
  local pid started
  pid="$(our_pid)"
  if [[ -n "$pid" ]]; then
    if port_open "$KAFKA_PORT"; then
      log "already running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
      return 0
    fi
    log "broker process $pid exists but does not answer yet; waiting ..."
    wait_ready "$pid"
    log "running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
    return 0
  fi
  rm -f "$PID_FILE"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $KAFKA_HOST:$p is in use by a process this script did not start (no live pid in $PID_FILE)"
    fi
  done

  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+; set JAVA_HOME or PATH)"
  started=$SECONDS
  ensure_jars
  write_config
  format_storage

  if [[ -f "$BROKER_OUT" ]]; then mv -f "$BROKER_OUT" "$BROKER_OUT.1"; fi
  if [[ -f "$BROKER_LOG" ]]; then BROKER_LOG_OFFSET="$(wc -c < "$BROKER_LOG" | tr -d ' ')"; fi
  # shellcheck disable=SC2086  # heap / JVM options are deliberately word-split
  nohup "$JAVA" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true $KAFKA_JVM_OPTS \
      -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dkafka.logs.dir="$LOG_DIR" \
      -cp "$KAFKA_LIB_DIR/*" kafka.Kafka "$CONF_FILE" \
      </dev/null >"$BROKER_OUT" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" > "$PID_FILE"
  log "started Kafka $KAFKA_VERSION (pid $pid), waiting for it to answer on $KAFKA_HOST:$KAFKA_PORT ..."
  wait_ready "$pid"
  log "running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT after $((SECONDS - started))s; data: $KAFKA_DATA_DIR"
}

cmd_stop() {
  lock
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    if [[ -f "$PID_FILE" ]]; then
      log "stale pid file (process $(cat "$PID_FILE") is not our broker); removing it"
      rm -f "$PID_FILE"
    fi
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid) ..."
  stop_pid "$pid"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(our_pid)"
  if [[ -z "$pid" ]]; then
    echo "stopped (KAFKA_DATA_DIR=$KAFKA_DATA_DIR)"
    return 3
  fi
  if port_open "$KAFKA_PORT"; then
    echo "running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT, Kafka $KAFKA_VERSION, data $KAFKA_DATA_DIR"
    return 0
  fi
  echo "unresponsive (pid $pid is alive but $KAFKA_HOST:$KAFKA_PORT does not accept connections)"
  return 1
}

case "${1:-}" in
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status)  cmd_status ;;
  logs)    tail -n 100 "$BROKER_LOG" ;;
  *)       echo "usage: $0 start|stop|restart|status|logs" >&2; exit 2 ;;
esac
