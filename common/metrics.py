"""Prometheus metrics: the names in the product contract. Labels carry only closed
sets of words (status codes, reasons, actions), never data from a request."""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

# A `_created` series beside every counter doubles the scrape and says only when the
# process started, which process_start_time_seconds already does.
disable_created_metrics()


class _Registry(CollectorRegistry):
    """Adds the per-request counts gathered in this process (``flush``) before each
    read: whoever renders it (``exposition``, the worker's metrics port) sees them all."""

    def collect(self):
        flush()
        yield from super().collect()


REGISTRY = _Registry(auto_describe=True)

collector_requests = Counter(
    "beacon_collector_requests",
    "HTTP requests to the collector's routes, and those the server refused before routing, by status code.",
    ["status"],
    registry=REGISTRY,
)
http_requests = Counter(
    "beacon_http_requests",
    "HTTP requests answered outside the collector's routes and the mounted apps "
    '(health, readiness, metrics, the redirect to the dashboard; route "unrouted": no route matched), '
    "by route and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
collector_beacons = Counter(
    "beacon_collector_beacons_accepted",
    "Beacons accepted (answered 2xx) by the collector.",
    registry=REGISTRY,
)
collector_rejected = Counter(
    "beacon_collector_rejected",
    "Beacons or requests rejected with a 4xx/503, by reason.",
    ["reason"],
    registry=REGISTRY,
)
optouts = Counter("beacon_optouts", "Objections received on POST /optout.", registry=REGISTRY)
api_requests = Counter(
    "beacon_api_requests",
    "Requests to the token-protected API under /api/, by route name and status code.",
    ["route", "status"],
    registry=REGISTRY,
)
filter_actions = Counter(
    "beacon_filter_actions",
    "What the privacy filter did, by action.",
    ["action"],
    registry=REGISTRY,
)
queue_depth = Gauge(
    "beacon_queue_depth",
    "Accepted, filtered rows waiting to be stored (embedded mode).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
sink_rows = Counter("beacon_sink_rows", "Rows inserted into ClickHouse.", registry=REGISTRY)
sink_errors = Counter("beacon_sink_errors", "Failed ClickHouse calls (retried).", registry=REGISTRY)
sink_duplicates_skipped = Counter(
    "beacon_sink_duplicates_skipped",
    "Replayed clean batches already stored, not inserted again.",
    registry=REGISTRY,
)
intake_replayed = Counter(
    "beacon_intake_replayed",
    "Rows of a process that ended (a crash) stored from its intake log.",
    registry=REGISTRY,
)
sink_batch_seconds = Histogram(
    "beacon_sink_batch_seconds",
    "Time to insert one batch into ClickHouse.",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
pipeline_latency = Histogram(
    "beacon_pipeline_latency_seconds",
    "Time from a beacon's arrival to its row being stored.",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
last_event_time = Gauge(
    "beacon_last_stored_event_timestamp_seconds",
    "Arrival time of the newest stored event.",
    registry=REGISTRY,
    multiprocess_mode="max",
)


pii_scrubbed = Counter(
    "beacon_filter_pii_scrubbed",
    "Personal-looking values removed from stored text, by kind.",
    ["kind"],
    registry=REGISTRY,
)


# --- counted per request -------------------------------------------------------------
# The collector counts several things per request. prometheus_client's ``inc()`` takes
# a lock, and with ``serve --workers N`` (multiprocess mode) also writes a shared
# mmap: ~2 µs each, ~10 µs a request, 5 % of an HTTP process. So these counts gather
# in a dict and reach the counters in one step every FLUSH_SECONDS, whenever this
# process's registry is read, and at exit. A scrape can lag another process by up
# to FLUSH_SECONDS; the totals are exact.
FLUSH_SECONDS = 1.0
_pending: dict = {}  # counter (a labelled child) → increments not yet added
_pending_lock = threading.Lock()
_flusher: threading.Thread | None = None


def _add(counter, n: int = 1) -> None:
    with _pending_lock:
        _pending[counter] = _pending.get(counter, 0) + n
    if _flusher is None:
        _start_flusher()


def flush() -> None:
    """Add the gathered per-request counts to the Prometheus counters."""
    with _pending_lock:
        if not _pending:
            return
        pending = _pending.copy()
        _pending.clear()
    for counter, n in pending.items():
        counter.inc(n)


def _start_flusher() -> None:
    global _flusher
    with _pending_lock:
        if _flusher is not None:
            return
        _flusher = threading.Thread(target=_flush_every, args=(FLUSH_SECONDS,), name="metrics-flush", daemon=True)
    _flusher.start()
    atexit.register(flush)


def _flush_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        flush()


def beacons_accepted(n: int) -> None:
    _add(collector_beacons, n)


def rejected(reason: str, n: int = 1) -> None:
    """Beacons or requests refused; ``reason`` is one of a closed set of words."""
    _add(_rejected(reason), n)


@lru_cache(maxsize=64)
def _rejected(reason: str):
    return collector_rejected.labels(reason)


def count_actions(actions: dict[str, int]) -> None:
    for action, n in actions.items():
        if action.startswith("pii_") and action != "pii_scrubbed":
            _add(_pii_kind(action[4:]), n)
        else:
            _add(_filter_action(action), n)


@lru_cache(maxsize=16)
def _pii_kind(kind: str):
    return pii_scrubbed.labels(kind)


@lru_cache(maxsize=64)
def _filter_action(action: str):
    return filter_actions.labels(action)


@lru_cache(maxsize=64)
def _collector_request(status: int):
    return collector_requests.labels(str(status))


def collector_request(status: int) -> None:
    """One HTTP request answered with ``status`` (by the collector app or the server)."""
    _add(_collector_request(status))


@lru_cache(maxsize=64)
def _http_request(route: str, status: int):
    return http_requests.labels(route or "unrouted", str(status))


def http_request(route: str, status: int) -> None:
    """A request answered on ``route``: an exact path of the route table, or "" (none matched)."""
    _add(_http_request(route, status))


def request_counter(collector_routes: Iterable[tuple[str, str]]) -> Callable[[str, int], None]:
    """What a router calls per response: requests to the collector's paths count in
    beacon_collector_requests_total, all others in beacon_http_requests_total."""
    collector_paths = frozenset(path for _method, path in collector_routes)

    def count(route: str, status: int) -> None:
        if route in collector_paths:
            collector_request(status)
        else:
            http_request(route, status)

    return count


@lru_cache(maxsize=128)
def _api_request(route: str, status: int):
    return api_requests.labels(route, str(status))


def api_request(route: str, status: int) -> None:
    _api_request(route, status).inc()


def exposition() -> bytes:
    """The text for /metrics: this process's metrics, or, with ``beacon serve
    --workers N``, those of every process (prometheus_client's multiprocess mode,
    switched on by PROMETHEUS_MULTIPROC_DIR before this module is imported)."""
    flush()  # into the shared files too (reading REGISTRY would do it, but that one is not read here)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_readiness)  # the checks of the process answering: they are not shared
        return generate_latest(registry)
    return generate_latest(REGISTRY)


collector_records_produced = Counter(
    "beacon_collector_records_produced",
    "Micro-batch records acknowledged by Kafka.",
    registry=REGISTRY,
)
collector_produce_errors = Counter(
    "beacon_collector_produce_errors",
    "Failed attempts to produce spooled records (retried).",
    registry=REGISTRY,
)
spool_bytes = Gauge(
    "beacon_collector_spool_bytes",
    "Bytes in the collector's spool not yet acknowledged by Kafka.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
worker_events_filtered = Counter(
    "beacon_worker_events_filtered",
    "Beacons the privacy filter processed (Kafka workers).",
    registry=REGISTRY,
)
consumer_lag = Gauge(
    "beacon_consumer_lag",
    "Records not yet processed by this consumer group, per partition it owns.",
    ["topic", "partition"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
worker_dead_letters = Counter(
    "beacon_worker_dead_letters",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
sink_dead_letters = Counter(
    "beacon_sink_dead_letters",
    "Rows the store refused for their content (not an outage), set aside as dead letters, "
    "by reason: constraint_violated or value_refused.",
    ["reason"],
    registry=REGISTRY,
)
sink_retrying = Gauge(
    "beacon_sink_retrying",
    "1 while the sink retries a failing ClickHouse call (an outage), else 0.",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
spool_limit_bytes = Gauge(
    "beacon_collector_spool_limit_bytes",
    "Spool size at which the collector answers 503 (--spool-max-bytes).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
salt_newest_day = Gauge(
    "beacon_visitor_salt_newest_day_timestamp_seconds",
    "Start of the UTC day of the newest visitor salt this process "
    "holds (now − this is under 24 h while today's salt exists).",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
salt_oldest_day = Gauge(
    "beacon_visitor_salt_oldest_day_timestamp_seconds",
    "Start of the UTC day of the oldest visitor salt this process "
    "holds (a salt is destroyed before now − this reaches 48 h).",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)

# Scheduled backups (beacon serve --backup-dir): age = time() − the timestamp.
backup_last_success = Gauge(
    "beacon_backup_last_success_timestamp_seconds",
    "When the newest backup was cut (epoch seconds); at start, the "
    "newest already in --backup-dir, else the start of the schedule (so that a backup never made shows as one late).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
backup_last_size = Gauge(
    "beacon_backup_last_size_bytes",
    "Size of the newest backup, its files linked from earlier backups included.",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
backup_last_added = Gauge(
    "beacon_backup_last_added_bytes",
    "Bytes the newest backup copied (the rest it hard-linked from the one before).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
backup_interval = Gauge(
    "beacon_backup_interval_seconds",
    "Time between scheduled backups (--backup-every).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
backup_failures = Counter("beacon_backup_failures", "Scheduled backups that failed.", registry=REGISTRY)
backup_failing = Gauge(
    "beacon_backup_failing",
    "1 when the last scheduled backup failed, 0 once one succeeds.",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

# The mail scheduler (reports/scheduler.py). Labels: the kind of mail (week, month,
# spike), never an address.
mails_sent = Counter(
    "beacon_mails_sent", "Reports and spike notices the SMTP server took.", ["kind"], registry=REGISTRY
)
mail_failures = Counter(
    "beacon_mail_failures",
    "Reports and spike notices that could not be made or sent (retried at the next round).",
    ["kind"],
    registry=REGISTRY,
)
mail_rounds = Counter("beacon_mail_rounds", "Rounds of the mail scheduler done.", registry=REGISTRY)


class _Readiness:
    """``beacon_ready_check{check}``: the /readyz checks of this process, 1 passing or
    0 failing, evaluated at each scrape, so that Prometheus can alert on readiness
    without probing /readyz itself."""

    def __init__(self) -> None:
        self.checks: dict[str, Callable[[], bool]] = {}

    def collect(self):
        family = GaugeMetricFamily(
            "beacon_ready_check", "1 when the named /readyz check passes, else 0.", labels=["check"]
        )
        for name, check in list(self.checks.items()):
            try:
                passing = bool(check())
            except Exception:  # a check that cannot tell has failed; the scrape must still answer
                passing = False
            family.add_metric([name], 1.0 if passing else 0.0)
        yield family


_readiness = _Readiness()
REGISTRY.register(_readiness)


def expose_readiness(checks: dict[str, Callable[[], bool]]) -> None:
    """Publish a process's ready checks as metrics. ``checks`` is the dict /readyz
    reads (``web.ops.Operations.ready_checks``), kept by reference: checks added to
    it later are published too."""
    _readiness.checks = checks


consumer_group_lag = Gauge(
    "beacon_consumer_group_lag",
    "Records a consumer group has not committed yet, per partition of its topics, "
    "as the broker sees it, measured outside the group (it keeps growing while the group's consumers are down).",
    ["group", "topic", "partition"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
consumer_group_committed = Gauge(
    "beacon_consumer_group_committed_offset",
    "A consumer group's committed offset per partition of its topics, as the "
    "broker sees it: its rate is what the group consumes.",
    ["group", "topic", "partition"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
