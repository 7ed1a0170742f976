"""``beacon status``: the whole pipeline in one view, for a person or a probe.

It reads what the processes already serve, ``/metrics`` and ``/readyz`` (the
base URLs given, ``beacon serve``'s own by default), and the store (through the
running server's control socket, or --clickhouse): no server of its own.

Rates. Counters are read twice: the view's rates are the counters' increase
between the oldest and the newest reading of the last minute, divided by the
seconds between them. ``beacon status`` reads ``interval`` seconds apart (5 by
default), so its rates are over those seconds; ``--watch`` keeps every reading of
the last 60 s, so after a minute its rates are over the last minute. A counter
that went down (its process restarted) counts from zero.

Health. The exit status is 1 and each cause is named when: a process does not
answer; its /readyz fails (with the failing checks); a sink retries a failing
store; a spool is over half its limit; a visitor salt is older than 26 h (today's
is missing) or one is kept beyond 48 h; beacons are accepted while nothing was
stored for over a minute. Dead letters waiting are shown as a warning (exit 0).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from storage import dead_letters
from storage.clickhouse import DATABASE, Store

WINDOW = 60.0  # seconds of readings the rates span at most
SALT_STALE = 26 * 3600
SALT_KEPT_TOO_LONG = 48 * 3600
# A scheduled backup is late when its newest is this many intervals old (a backup of
# a large store takes a while, and a restart of beacon serve waits for none).
BACKUP_LATE_FACTOR = 1.5
SPOOL_FULL_SHARE = 0.5
NOTHING_STORED = 60.0  # seconds without a stored event, while beacons are accepted

# beacon_filter_actions_total: every event the filter keeps gets exactly one of these
# two actions (its IP truncated, or found invalid); those it drops, one of the others.
KEPT_ACTIONS = ("ip_truncated", "ip_invalid")
DROP_ACTIONS = {"bot_dropped": "bot", "opted_out_dropped": "opted_out", "filter_error": "filter_error"}

Labels = tuple[tuple[str, str], ...]


# --- reading the processes ------------------------------------------------------------------


@dataclass
class Reading:
    """One process, read once."""

    url: str
    at: float
    error: str = ""  # why it could not be read; "" when it answered
    ready: bool | None = None  # None: no /readyz answer in JSON (a worker's metrics port)
    checks: dict[str, bool] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def series(self, name: str) -> dict[Labels, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def read_process(url: str, timeout: float = 3.0) -> Reading:
    reading = Reading(url, time.time())
    try:
        metrics_text = _get(f"{url}/metrics", timeout)[1]
    except OSError as exc:
        reading.error = _reason(exc)
        return reading
    for family in text_string_to_metric_families(metrics_text.decode()):
        for sample in family.samples:
            reading.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    try:
        status, body = _get(f"{url}/readyz", timeout)
        answer = json.loads(body)
        reading.checks = {str(k): bool(v) for k, v in answer.get("checks", {}).items()}
        reading.ready = status == 200 and bool(answer.get("ready"))
    except (OSError, ValueError, AttributeError):
        pass  # a worker's metrics port serves only metrics
    return reading


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:  # 503 from /readyz: the body names the checks
        return exc.code, exc.read()


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", exc)
    return str(getattr(reason, "strerror", None) or reason)


class Readings:
    """The readings of the last ``WINDOW`` seconds, per process."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self.history: dict[str, list[Reading]] = {url: [] for url in urls}

    def take(self) -> None:
        for url in self.urls:
            readings = self.history[url]
            readings.append(read_process(url))
            newest = readings[-1].at
            while len(readings) > 2 and newest - readings[1].at >= WINDOW:
                readings.pop(0)

    def latest(self) -> list[Reading]:
        return [self.history[url][-1] for url in self.urls]

    def span(self) -> float:
        """Seconds the rates are over (the longest of the processes')."""
        spans = [r[-1].at - r[0].at for url in self.urls if len(r := self._answered(url)) > 1]
        return max(spans, default=0.0)

    def unchanged_for(self, url: str, name: str) -> float:
        """Seconds over which a process's counter did not move (0 when it did): the
        spool's age is at least that when it holds records and nothing was delivered."""
        answered = self._answered(url)
        if len(answered) < 2 or answered[0].series(name) != answered[-1].series(name):
            return 0.0
        return answered[-1].at - answered[0].at

    def _answered(self, url: str) -> list[Reading]:
        """The readings of a process since it last did not answer (none if it does not now)."""
        answered: list[Reading] = []
        for reading in self.history[url]:
            answered = [] if reading.error else answered + [reading]
        return answered

    def rate(self, name: str, keep: Callable[[Labels], bool] = lambda labels: True) -> float:
        """Per second, summed over the processes and the series ``keep`` takes."""
        return sum(self.rates_by(name, lambda labels: "" if keep(labels) else None).values())

    def rates_by(self, name: str, key: Callable[[Labels], str | None]) -> dict[str, float]:
        """Per second, summed per ``key(labels)`` (series with key None left out)."""
        rates: dict[str, float] = defaultdict(float)
        for url in self.urls:
            answered = self._answered(url)
            if len(answered) < 2:
                continue
            first, last = answered[0], answered[-1]
            before = first.series(name)
            for labels, value in last.series(name).items():
                k = key(labels)
                if k is None:
                    continue
                start = before.get(labels, 0.0)
                rates[k] += (value - start if value >= start else value) / (last.at - first.at)
        return dict(rates)


# --- reading the store ------------------------------------------------------------------------


@dataclass
class StoreFacts:
    rows_last_minute: int
    last_event_age: float | None  # seconds; None when the store holds no event
    ttl_days: dict[str, int]  # table → days its rows are kept
    disk_bytes: int
    dead_letters_waiting: dict[str, int]  # reason → letters (embedded store)


_TTL_DAYS = re.compile(r"\bTTL .*?toInterval(Day|Month|Year)\((\d+)\)")
_DAYS_PER = {"Day": 1, "Month": 30, "Year": 365}


def read_store(store: Store) -> StoreFacts:
    ((rows_last_minute,),) = store.rows(
        f"SELECT count() FROM {DATABASE}.events WHERE ts >= now64(3) - INTERVAL 60 SECOND"
    )
    ((newest,),) = store.rows(f"SELECT toUnixTimestamp64Milli(max(ts)) / 1000 FROM {DATABASE}.events")
    ttl = {}
    for name, engine in store.rows(
        "SELECT name, engine_full FROM system.tables WHERE database = {d:String} ORDER BY name", {"d": DATABASE}
    ):
        found = _TTL_DAYS.search(engine)
        if found:
            ttl[name] = int(found.group(2)) * _DAYS_PER[found.group(1)]
    ((disk,),) = store.rows(
        "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = {d:String} AND active", {"d": DATABASE}
    )
    waiting = {reason: n for reason, n, _, _ in dead_letters.counts(store)}
    return StoreFacts(
        int(rows_last_minute), time.time() - float(newest) if float(newest) > 0 else None, ttl, int(disk), waiting
    )


# --- the view -----------------------------------------------------------------------------------


@dataclass
class Process:
    url: str
    answered: bool
    ready: bool | None
    failing: list[str]
    error: str


@dataclass
class Lag:
    url: str
    group: str  # "" when a consumer reports its own lag; else measured from outside the group
    topic: str
    partition: str
    records: float


@dataclass
class Status:
    at: float
    rates_over_seconds: float
    processes: list[Process]
    collector_accepted: float  # per second, and the same below
    collector_rejected: dict[str, float]  # reason → per second
    filter_kept: float
    filter_dropped: dict[str, float]
    sink_stored: float
    sink_retrying: bool
    dead_letters: dict[str, float]  # reason → per second, both stages
    dead_letters_total: dict[str, float]  # reason → since the processes started
    row_buffer: float | None  # embedded: rows accepted and filtered, not yet inserted
    spool_bytes: float | None
    spool_limit_bytes: float | None
    spool_stalled_seconds: float | None  # at least this long without a delivery to Kafka, while it holds records
    consumer_lag: list[Lag]
    salt_age: float | None
    salt_oldest_age: float | None
    backup_age: float | None  # seconds since the newest backup's cut (beacon serve --backup-dir)
    backup_interval: float | None
    backup_bytes: float | None
    store: StoreFacts | None
    store_error: str
    problems: list[str]
    warnings: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {**asdict(self), "healthy": self.healthy}


def build(readings: Readings, store: StoreFacts | None, store_error: str = "") -> Status:
    latest = readings.latest()
    up = [r for r in latest if not r.error]
    status = Status(
        at=max((r.at for r in latest), default=time.time()),
        rates_over_seconds=readings.span(),
        processes=[
            Process(r.url, not r.error, r.ready, sorted(k for k, ok in r.checks.items() if not ok), r.error)
            for r in latest
        ],
        collector_accepted=readings.rate("beacon_collector_beacons_accepted_total"),
        collector_rejected=_nonzero(readings.rates_by("beacon_collector_rejected_total", _label("reason"))),
        filter_kept=readings.rate(
            "beacon_filter_actions_total", lambda labels: dict(labels).get("action") in KEPT_ACTIONS
        ),
        filter_dropped=_nonzero(
            readings.rates_by(
                "beacon_filter_actions_total", lambda labels: DROP_ACTIONS.get(dict(labels).get("action", ""))
            )
        ),
        sink_stored=readings.rate("beacon_sink_rows_total"),
        sink_retrying=any((r.value("beacon_sink_retrying") or 0) > 0 for r in up),
        dead_letters=_nonzero(
            _merged(
                readings.rates_by("beacon_sink_dead_letters_total", _label("reason")),
                readings.rates_by("beacon_worker_dead_letters_total", _label("reason")),
            )
        ),
        dead_letters_total=_nonzero(
            _merged(
                *(_by_reason(r, "beacon_sink_dead_letters_total") for r in up),
                *(_by_reason(r, "beacon_worker_dead_letters_total") for r in up),
            )
        ),
        # The row buffer of a process that stores (every process exports the gauge).
        row_buffer=_sum_present(
            r.value("beacon_queue_depth")
            for r in up
            if "last_insert" in r.checks or (r.value("beacon_sink_rows_total") or 0) > 0
        ),
        spool_bytes=_sum_present(r.value("beacon_collector_spool_bytes") for r in up),
        spool_limit_bytes=_sum_present(r.value("beacon_collector_spool_limit_bytes") or None for r in up),
        spool_stalled_seconds=max(
            (
                readings.unchanged_for(url, "beacon_collector_records_produced_total")
                for url in readings.urls
                if (readings.history[url][-1].value("beacon_collector_spool_bytes") or 0) > 0
            ),
            default=None,
        ),
        consumer_lag=[
            Lag(r.url, dict(labels).get("group", ""), dict(labels)["topic"], dict(labels)["partition"], value)
            for r in up
            for name in ("beacon_consumer_lag", "beacon_consumer_group_lag")
            for labels, value in sorted(r.series(name).items())
        ],
        salt_age=_age_of_oldest(up, "beacon_visitor_salt_newest_day_timestamp_seconds"),
        salt_oldest_age=_age_of_oldest(up, "beacon_visitor_salt_oldest_day_timestamp_seconds"),
        backup_age=_age_of_oldest(up, "beacon_backup_last_success_timestamp_seconds"),
        backup_interval=_sum_present(r.value("beacon_backup_interval_seconds") for r in up),
        backup_bytes=_sum_present(r.value("beacon_backup_last_size_bytes") for r in up),
        store=store,
        store_error=store_error,
        problems=[],
        warnings=[],
    )
    status.problems = problems(status, latest)
    status.warnings = warnings(status)
    return status


def problems(status: Status, latest: list[Reading]) -> list[str]:
    found = []
    for r in latest:
        if r.error:
            found.append(f"{r.url} does not answer ({r.error})")
        elif r.ready is False:
            failing = sorted(k for k, ok in r.checks.items() if not ok)
            found.append(f"{r.url} is not ready: {', '.join(failing) or 'no check named'} failing")
        if (r.value("beacon_sink_retrying") or 0) > 0:
            found.append(f"{r.url}: the sink is retrying a failing store")
        spool, limit = r.value("beacon_collector_spool_bytes"), r.value("beacon_collector_spool_limit_bytes")
        if spool is not None and limit and spool > SPOOL_FULL_SHARE * limit:
            found.append(f"{r.url}: spool at {spool / limit:.0%} of its limit (Kafka is not taking the beacons)")
        salt = _age_of_oldest([r], "beacon_visitor_salt_newest_day_timestamp_seconds")
        if salt is not None and salt > SALT_STALE:
            found.append(f"{r.url}: newest visitor salt {_duration(salt)} old: today's is missing")
        oldest = _age_of_oldest([r], "beacon_visitor_salt_oldest_day_timestamp_seconds")
        if oldest is not None and oldest > SALT_KEPT_TOO_LONG:
            found.append(f"{r.url}: a visitor salt is kept {_duration(oldest)}, beyond 48 h")
        found += _backup_problems(r)
    last_stored = _last_stored_age(status, latest)
    if (
        status.collector_accepted > 0
        and status.sink_stored == 0
        and last_stored is not None
        and last_stored > NOTHING_STORED
    ):
        found.append(
            f"beacons are accepted ({status.collector_accepted:.1f}/s) but nothing was stored "
            f"for {_duration(last_stored)}"
        )
    return found


def _backup_problems(reading: Reading) -> list[str]:
    """A scheduled backup that failed, or is late (beacon serve --backup-dir)."""
    interval = reading.value("beacon_backup_interval_seconds")
    if not interval:
        return []
    found = []
    if (reading.value("beacon_backup_failing") or 0) > 0:
        found.append(f"{reading.url}: the last scheduled backup failed (see the server's log)")
    age = _age_of_oldest([reading], "beacon_backup_last_success_timestamp_seconds")
    if age is not None and age > BACKUP_LATE_FACTOR * interval:
        found.append(f"{reading.url}: newest backup {_duration(age)} old, one is due every {_duration(interval)}")
    return found


def _last_stored_age(status: Status, latest: list[Reading]) -> float | None:
    """Seconds since the newest stored event: the store says, else the sinks' metric."""
    if status.store is not None:
        return status.store.last_event_age if status.store.last_event_age is not None else float("inf")
    newest = [v for r in latest if not r.error and (v := r.value("beacon_last_stored_event_timestamp_seconds"))]
    sinks = [r for r in latest if not r.error and (r.value("beacon_sink_rows_total") or 0) > 0]
    if newest:
        return status.at - max(newest)
    return None if not sinks else float("inf")


def warnings(status: Status) -> list[str]:
    found = []
    if status.store is not None and status.store.dead_letters_waiting:
        waiting = ", ".join(f"{reason} {n}" for reason, n in sorted(status.store.dead_letters_waiting.items()))
        found.append(f"dead letters waiting in the store: {waiting} (beacon dlq list)")
    if status.store_error:
        found.append(f"store not read: {status.store_error}")
    return found


def _age_of_oldest(readings: list[Reading], timestamp_metric: str) -> float | None:
    """Seconds since the earliest of a timestamp gauge (unset: 0, not shown)."""
    times = [v for r in readings if (v := r.value(timestamp_metric))]
    return max(r.at for r in readings) - min(times) if times else None


def _label(name: str) -> Callable[[Labels], str | None]:
    return lambda labels: dict(labels).get(name)


def _by_reason(reading: Reading, name: str) -> dict[str, float]:
    return {dict(labels).get("reason", ""): v for labels, v in reading.series(name).items()}


def _merged(*parts: dict[str, float]) -> dict[str, float]:
    merged: dict[str, float] = defaultdict(float)
    for part in parts:
        for k, v in part.items():
            merged[k] += v
    return dict(merged)


def _nonzero(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in sorted(values.items()) if v > 0}


def _sum_present(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


# --- showing it --------------------------------------------------------------------------------


def render(status: Status) -> Group:
    verdict = Text("HEALTHY", style="bold green") if status.healthy else Text("UNHEALTHY", style="bold red")
    title = Text.assemble(
        "beacon status  ",
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.at)),
        f"  rates over the last {status.rates_over_seconds:.0f} s  ",
        verdict,
    )
    parts = [title, _processes(status), _pipeline(status)]
    if (queues := _queues(status)).row_count:
        parts.append(queues)
    if status.store is not None:
        parts.append(_store(status.store))
    if status.problems or status.warnings:
        parts.append(Text("\n".join([f"✗ {p}" for p in status.problems] + [f"! {w}" for w in status.warnings])))
    return Group(*parts)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _processes(status: Status) -> Table:
    table = _table("processes", "url", "answers", "ready", "failing checks")
    for p in status.processes:
        ready = "—" if p.ready is None else ("yes" if p.ready else "NO")
        table.add_row(p.url, "yes" if p.answered else f"NO: {p.error}", ready, ", ".join(p.failing))
    return table


def _pipeline(status: Status) -> Table:
    table = _table("pipeline (events/s)", "stage", "per second", "by reason")
    table.add_row("collector accepted", _rate(status.collector_accepted), "")
    table.add_row(
        "collector rejected", _rate(sum(status.collector_rejected.values())), _reasons(status.collector_rejected)
    )
    table.add_row("filter kept", _rate(status.filter_kept), "")
    table.add_row("filter dropped", _rate(sum(status.filter_dropped.values())), _reasons(status.filter_dropped))
    table.add_row("sink stored", _rate(status.sink_stored), "RETRYING" if status.sink_retrying else "")
    table.add_row(
        "dead letters",
        _rate(sum(status.dead_letters.values())),
        _reasons(status.dead_letters_total, "total: ", "{:.0f}"),
    )
    return table


def _queues(status: Status) -> Table:
    table = _table("queues", "where", "depth", "")
    if status.row_buffer is not None:
        table.add_row("rows waiting for their INSERT", f"{status.row_buffer:,.0f}", "rows")
    if status.spool_limit_bytes or status.spool_bytes:
        limit = status.spool_limit_bytes
        share = f"{status.spool_bytes / limit:.0%} of {_bytes(limit)}" if limit else ""
        if status.spool_stalled_seconds:
            share += f", nothing delivered for ≥ {_duration(status.spool_stalled_seconds)}"
        table.add_row("collector spool", _bytes(status.spool_bytes or 0), share)
    for lag in status.consumer_lag:
        table.add_row(
            f"lag {lag.topic}[{lag.partition}]",
            f"{lag.records:,.0f}",
            f"records, group {lag.group}" if lag.group else "records",
        )
    if status.backup_age is not None and status.backup_interval:
        table.add_row(
            "newest backup",
            f"{_duration(status.backup_age)} old",
            f"{_bytes(status.backup_bytes or 0)}, one every {_duration(status.backup_interval)}",
        )
    if status.salt_age is not None:
        table.add_row(
            "visitor salt, newest",
            _duration(status.salt_age),
            f"oldest {_duration(status.salt_oldest_age)}" if status.salt_oldest_age else "",
        )
    return table


def _store(facts: StoreFacts) -> Table:
    table = Table(title="store", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("rows stored in the last minute", f"{facts.rows_last_minute:,}")
    table.add_row(
        "last stored event", "none" if facts.last_event_age is None else f"{_duration(facts.last_event_age)} ago"
    )
    table.add_row("disk used", _bytes(facts.disk_bytes))
    by_days: dict[int, list[str]] = defaultdict(list)
    for name, days in sorted(facts.ttl_days.items()):
        by_days[days].append(name)
    for days, tables in sorted(by_days.items(), reverse=True):
        table.add_row(f"TTL {days} d", ", ".join(tables))
    table.add_row(
        "dead letters waiting",
        _reasons({k: float(v) for k, v in facts.dead_letters_waiting.items()}, fmt="{:.0f}") or "none",
    )
    return table


def _rate(value: float) -> str:
    return f"{value:,.1f}"


def _reasons(values: dict[str, float], prefix: str = "", fmt: str = "{:.1f}") -> str:
    return (prefix + ", ".join(f"{k} {fmt.format(v)}" for k, v in sorted(values.items()))) if values else ""


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- the command ------------------------------------------------------------------------------


def default_url(host: str, port: int) -> str:
    """``beacon serve``'s own base URL, as this machine reaches it."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(
    urls: list[str],
    store: Store | None,
    interval: float = 5.0,
    watch: bool = False,
    as_json: bool = False,
    store_missing: str = "",
    console: Console | None = None,
) -> int:
    """Read, show, and return the exit status: 0 healthy, 1 not (the causes shown).
    ``store_missing``: why there is no store to read, when there is none."""
    console = console or Console()
    readings = Readings(urls)
    readings.take()
    if watch:
        return _watch(console, readings, store, interval, as_json, store_missing)
    time.sleep(interval)
    status = _status(readings, store, store_missing)
    _show(console, status, as_json)
    return 0 if status.healthy else 1


def _watch(
    console: Console, readings: Readings, store: Store | None, interval: float, as_json: bool, store_missing: str
) -> int:
    """Refresh the view in place (with --json, print one JSON line per reading) until
    interrupted; the exit status is the last reading's."""
    from rich.live import Live

    healthy = True
    try:
        if as_json:
            while True:
                time.sleep(interval)
                status = _status(readings, store, store_missing)
                healthy = status.healthy
                _show(console, status, as_json)
        with Live(Text("reading…"), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                status = _status(readings, store, store_missing)
                healthy = status.healthy
                live.update(render(status), refresh=True)
    except KeyboardInterrupt:
        pass
    return 0 if healthy else 1


def _status(readings: Readings, store: Store | None, store_missing: str) -> Status:
    readings.take()
    facts, error = None, store_missing
    if store is not None:
        try:
            facts = read_store(store)
        except Exception as exc:  # the store's view is missing; the rest still shows
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return build(readings, facts, error)


def _show(console: Console, status: Status, as_json: bool) -> None:
    if as_json:
        console.print(json.dumps(status.as_json()), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(render(status))
