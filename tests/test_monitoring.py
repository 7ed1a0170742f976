"""deploy/monitoring/ against the real tools: promtool checks the configuration and
runs the alerts' unit tests; a real Prometheus (Debian's package) scrapes a running
`beacon serve` and a Kafka pipeline on loopback and its alerts go pending, firing
and back when the sink or the workers stop and return; the Grafana dashboards'
queries run against chDB (marketing) and Prometheus (ops).

The live tests run a copy of alerts.yml with every duration divided by ``SPEED``
(10 minutes become 10 s), made from the real file, so they last well under a minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.load import CHROME, Load, near, until
from tests.server import BeaconServer, cli, free_port

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deploy" / "monitoring"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SPEED = 60  # a minute of the real rules is 1 s here (the scrape interval: a 5-minute range holds 5 scrapes)

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="Debian's prometheus package is not installed")


# --- the files ---------------------------------------------------------------------------------


def _promtool(*args: str, cwd: Path = MONITORING) -> str:
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_config_and_rules_and_runs_the_alert_unit_tests():
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in _promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in _promtool("test", "rules", "tests/alerts_test.yml")


def _alert_names() -> list[str]:
    return re.findall(r"^\s+- alert: (\w+)$", (MONITORING / "alerts.yml").read_text(), re.M)


def test_every_alert_has_unit_tests_that_fire_it_and_a_runbook_entry():
    names = _alert_names()
    assert len(names) == 12
    unit_tests = (MONITORING / "tests" / "alerts_test.yml").read_text()
    runbook = (REPO / "docs" / "operations.md").read_text()
    for name in names:
        # a test case in which it fires (exp_alerts with labels), not only one where it must not
        assert re.search(rf"alertname: {name}\n\s+exp_alerts:\n\s+- exp_labels", unit_tests), name
        assert f"\n#### {name}\n" in runbook, name
        assert f"docs/operations.md#{name.lower()}" in (MONITORING / "alerts.yml").read_text()


def quick_rules(text: str, speed: int = SPEED) -> str:
    """The rules with every duration (``for:``, range selectors, subquery steps,
    offsets) divided by ``speed``: the same alerts, on a faster clock."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

    def scaled(duration: str) -> str:
        n, unit = re.fullmatch(r"(\d+)(ms|[smhdwy])", duration).groups()
        return f"{max(1, round(int(n) * units[unit] * 1000 / speed))}ms"

    text = re.sub(r"(for: )(\d+(?:ms|[smhdwy]))", lambda m: m.group(1) + scaled(m.group(2)), text)
    text = re.sub(r"(offset )(\d+(?:ms|[smhdwy]))", lambda m: m.group(1) + scaled(m.group(2)), text)
    return re.sub(
        r"\[(\d+(?:ms|[smhdwy]))(?::(\d+(?:ms|[smhdwy]))?)?\]",
        lambda m: (
            "["
            + scaled(m.group(1))
            + ((":" + scaled(m.group(2))) if m.group(2) else (":" if ":" in m.group(0) else ""))
            + "]"
        ),
        text,
    )


def test_the_quick_copy_of_the_rules_is_valid_and_only_faster(tmp_path):
    real = (MONITORING / "alerts.yml").read_text()
    quick = quick_rules(real)
    assert "for: 10000ms" in quick and "[10000ms]" in quick and "[10m]" not in quick  # 10m → 10 s
    assert re.sub(r"\d+ms|\d+[smhd]\b", "D", quick) == re.sub(r"\d+ms|\d+[smhd]\b", "D", real)
    (tmp_path / "quick.yml").write_text(quick)
    assert "SUCCESS" in _promtool("check", "rules", str(tmp_path / "quick.yml"), cwd=tmp_path)


# --- a real Prometheus ----------------------------------------------------------------------------


class Prometheus:
    """Prometheus on loopback, scraping ``jobs`` (job → host:port targets) every second
    and evaluating the quick rules every second."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], speed: int = SPEED):
        self.workdir = workdir / f"prometheus-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir()
        (self.workdir / "alerts.yml").write_text(quick_rules((MONITORING / "alerts.yml").read_text(), speed))
        scrape = [{"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in jobs.items()]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": scrape,
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        assert "SUCCESS" in _promtool("check", "config", "prometheus.yml", cwd=self.workdir)
        self._log = open(self.workdir / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        until(lambda: self._answers("/-/ready"), 30, "prometheus ready")
        return self

    def _answers(self, path: str) -> bool:
        assert self.process.poll() is None, (self.workdir / "prometheus.log").read_text()
        try:
            return httpx.get(self.url + path, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self._log.close()

    def api(self, path: str, **params) -> dict:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def value(self, expr: str) -> float | None:
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> dict[str, str]:
        return {t["labels"]["job"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def alert_states(self) -> dict[str, set[str]]:
        states: dict[str, set[str]] = {}
        for alert in self.api("alerts")["alerts"]:
            states.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
        return states


class Watch:
    """Polls Prometheus's alerts and remembers, per alert, the states in the order
    first seen (so "pending, then firing" can be checked)."""

    def __init__(self, prometheus: Prometheus):
        self.prometheus = prometheus
        self.seen: dict[str, list[str]] = {}

    def until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.prometheus.alert_states()
            for name, now in states.items():
                for state in sorted(now, key=["pending", "firing"].index):
                    if state not in self.seen.setdefault(name, []):
                        self.seen[name].append(state)
            if condition(states):
                return
            assert time.monotonic() < deadline, f"{what}: alerts {states}, seen {self.seen}"
            time.sleep(0.25)

    def firing(self, *names: str, timeout: float = 60) -> None:
        self.until(lambda s: all("firing" in s.get(n, ()) for n in names), timeout, f"{names} firing")
        for name in names:
            assert self.seen[name][:2] == ["pending", "firing"], (name, self.seen[name])

    def cleared(self, *names: str, timeout: float = 60) -> None:
        self.until(lambda s: not any(n in s for n in names), timeout, f"{names} cleared")


def _host_port(url: str) -> str:
    return url.removeprefix("http://")


# Ops dashboard: its PromQL, with Grafana's variables as they would be set.
def _ops_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana" / "ops.json").read_text())
    return [t["expr"].replace("$__rate_interval", "20s") for p in dashboard["panels"] for t in p["targets"]]


# The store stops taking INSERTs: the sink retries, /readyz fails, and `beacon serve`
# answers 503 instead of taking beacons it cannot store (collector/app.py), so the
# rejections spike. BeaconNoEventsStored (accepted but not stored) cannot fire here,
# nothing being accepted; it is the Kafka deployment's, whose collectors keep
# accepting into their spool (the lag test below).
STALL_ALERTS = ("BeaconSinkRetrying", "BeaconNotReady", "BeaconRejectSpike")


def test_prometheus_scrapes_beacon_serve_and_alerts_while_its_store_is_away(tmp_path):
    with BeaconServer(tmp_path / "data") as server:
        data = ["--data-dir", str(server.data_dir)]
        cli("sites", "add", "example.com", *data)
        prometheus = Prometheus(tmp_path, {"beacon-serve": [_host_port(server.url)]}).start()
        load = Load(server.url, per_second=40).start()
        try:
            watch = Watch(prometheus)
            until(lambda: prometheus.targets_up() == {"beacon-serve": "up"}, 20, "target up")
            # Rates move with the known load (40 beacons/s, counted by the sender).
            until(
                lambda: (
                    near(prometheus.value("sum(rate(beacon_collector_beacons_accepted_total[20s]))"), load.rate(20))
                    and near(prometheus.value("sum(rate(beacon_sink_rows_total[20s]))"), load.rate(20))
                ),
                45,
                "accepted and stored rates near the load",
            )
            assert prometheus.value('beacon_ready_check{check="last_insert"}') == 1
            for expr in _ops_queries():  # every panel of the ops dashboard is valid PromQL here
                prometheus.api("query", query=expr)
            watch.until(lambda s: not any(a in s for a in STALL_ALERTS), 10, "no alert before the stall")

            cli("query", "--write", *data, "DETACH TABLE beacon.events")  # an outage: INSERTs fail, and are retried
            try:
                watch.firing(*STALL_ALERTS, timeout=60)
            finally:
                cli("query", "--write", *data, "ATTACH TABLE beacon.events")
            watch.cleared(*STALL_ALERTS, timeout=60)
        finally:
            load.stop()
            prometheus.stop()
        # Nothing accepted was lost to the outage.
        until(
            lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] == len(load.accepted),
            30,
            "every accepted beacon stored",
        )


def test_prometheus_alerts_while_scheduled_backups_fail_and_clears_once_one_is_made(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the backup directory cannot be made under a file
    backups = blocked / "backups"
    with BeaconServer(tmp_path / "data", "--backup-dir", str(backups), "--backup-every", "2s") as server:
        prometheus = Prometheus(tmp_path, {"beacon-serve": [_host_port(server.url)]}).start()
        try:
            watch = Watch(prometheus)
            # 1.5 intervals without a backup (3 s), for 10 min / 60: both fire.
            watch.firing("BeaconBackupFailing", "BeaconBackupLate", timeout=60)
            blocked.unlink()
            until(lambda: backups.is_dir() and any(backups.iterdir()), 30, "a backup made once the way is clear")
            watch.cleared("BeaconBackupFailing", "BeaconBackupLate", timeout=60)
        finally:
            prometheus.stop()


# --- the Kafka deployment ---------------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("BEACON_SKIP_KAFKA") == "1", reason="BEACON_SKIP_KAFKA=1: Kafka tests disabled")
def test_prometheus_sees_the_kafka_pipeline_and_the_lag_grow_while_the_workers_are_stopped(tmp_path):
    from tests.kafka.pipeline import SITE, Deployment, Process
    from tests.kafka.store import start_store

    d = Deployment(tmp_path, partitions=2)
    try:
        store_url = start_store(d)
        worker = d.worker().start()
        collector = d.collector().start()
        prometheus = Prometheus(
            tmp_path,
            {
                "beacon-store": [_host_port(store_url)],
                "beacon-worker": [f"127.0.0.1:{d.metrics_port}"],
                "beacon-collector": [_host_port(collector.url)],
            },
            # 30×, not 60×: the store measures the groups' lag every REPORT_EVERY s, and
            # the lag's growth (deriv over 5 minutes) needs more than one of those in its range.
            speed=30,
        ).start()
        load = Load(collector.url, per_second=60, batch=6, site=SITE).start()
        try:
            watch = Watch(prometheus)
            until(
                lambda: set(prometheus.targets_up().values()) == {"up"} and len(prometheus.targets_up()) == 3,
                30,
                "three targets up",
            )
            until(
                lambda: near(prometheus.value("sum(rate(beacon_sink_rows_total[20s]))"), load.rate(20)),
                60,
                "stored rate near the load",
            )
            assert prometheus.value(f'sum(beacon_consumer_group_lag{{group="{d.group}"}})') is not None
            # beacon status sees the same pipeline, healthy (exit 0), every stage moving.
            status = json.loads(
                cli(
                    "status",
                    "--url",
                    collector.url,
                    "--url",
                    f"http://127.0.0.1:{d.metrics_port}",
                    "--url",
                    store_url,
                    "--data-dir",
                    str(d.data_dir),
                    "--interval",
                    "2",
                    "--json",
                ).stdout
            )
            assert status["healthy"] and [p["ready"] for p in status["processes"]] == [True, None, True]
            assert min(status["collector_accepted"], status["filter_kept"], status["sink_stored"]) > 0
            assert {(lag["group"], lag["topic"]) for lag in status["consumer_lag"]} >= {
                ("", d.topics["raw"]),
                (d.group, d.topics["raw"]),
                (f"{d.group}-store", d.topics["clean"]),
            }
            watch.until(
                lambda s: "BeaconConsumerLagGrowing" not in s and "BeaconNoEventsStored" not in s,
                10,
                "no lag or storage alert while the workers run",
            )

            worker.stop()  # the only worker: beacons.raw is not read
            watch.firing("BeaconConsumerLagGrowing", "BeaconNoEventsStored", "BeaconProcessDown", timeout=60)
            lag = prometheus.api("query", query="beacon:consumer_group_lag:sum")["result"]
            assert {(r["metric"]["group"], r["metric"]["topic"]) for r in lag if float(r["value"][1]) > 0} == {
                (d.group, d.topics["raw"])
            }

            d._add(Process("worker-again", worker.args, tmp_path, ready_log="[^Worker]: Ready")).start()
            watch.cleared("BeaconConsumerLagGrowing", "BeaconNoEventsStored", "BeaconProcessDown", timeout=90)
        finally:
            load.stop()
            prometheus.stop()
        assert d.wait_stored(len(load.accepted)) == {"n": len(load.accepted), "u": len(load.accepted)}
    finally:
        d.close()


# --- the marketing dashboard on chDB -------------------------------------------------------------------------

DASHBOARD_SITE = "dashboards.example"


def _grafana_sql(sql: str, since: float, until: float) -> str:
    """The SQL as the ClickHouse data source plugin sends it (its macros, the site variable)."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({int(since)}) AND \1 <= toDateTime({int(until)})", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({int(since)})").replace("$__toTime", f"toDateTime({int(until)})")
    return sql.replace("${site}", DASHBOARD_SITE)


def _seed(store) -> dict:
    """Events over the last three hours (→ events_hourly, by its materialized view) and
    three closed days of stats_daily, with the figures the panels should show."""
    from collections import Counter

    from schemas.events import Beacon, RawEvent, RequestContext
    from storage.sink import EventSink
    from streams.geo import GeoLookup
    from streams.privacy_filter import FilterEnv, filter_event

    now = time.time()
    events = []
    for i in range(90):
        raw = RawEvent(
            str(uuid.uuid4()),
            Beacon(site=DASHBOARD_SITE, url=f"https://{DASHBOARD_SITE}/p/{i % 4}"),
            RequestContext(now - 3600 * (i % 3) - 60, "203.0.113.9", CHROME),
        )
        event = filter_event(raw, FilterEnv(GeoLookup(None)), Counter())
        event.visitor_id = 1 + i % 7  # seven visitors each hour
        events.append(event)
    EventSink(store).write(events)

    days = [time.strftime("%Y-%m-%d", time.gmtime(now - 86400 * k)) for k in (1, 2, 3)]
    rows = []
    for n, day in enumerate(days, 1):
        rows.append(
            {
                "site": DASHBOARD_SITE,
                "dim": "",
                "day": day,
                "value": "",
                "visitors": 100 * n,
                "visits": 120 * n,
                "bounces": 60 * n,
                "duration": 1200 * n,
                "pageviews": 300 * n,
            }
        )
        for value, visitors in (("Google", 50 * n), ("Newsletter", 30 * n), ("Direct / None", 20 * n)):
            rows.append(
                {
                    "site": DASHBOARD_SITE,
                    "dim": "visit:source",
                    "day": day,
                    "value": value,
                    "visitors": visitors,
                    "visits": visitors + 5,
                    "bounces": visitors // 2,
                }
            )
        for dim, value in (
            ("event:page", "/pricing"),
            ("visit:utm_campaign", "spring"),
            ("visit:country", "DE"),
            ("visit:device", "Desktop"),
            ("visit:browser", "Firefox"),
        ):
            rows.append(
                {
                    "site": DASHBOARD_SITE,
                    "dim": dim,
                    "day": day,
                    "value": value,
                    "visitors": 10 * n,
                    "pageviews": 25 * n,
                    "entry_visits": 8 * n,
                    "entry_bounces": 2 * n,
                    "visits": 12 * n,
                }
            )
        rows.append(
            {
                "site": DASHBOARD_SITE,
                "dim": "event:name",
                "day": day,
                "value": "Signup",
                "visitors": 4 * n,
                "events": 5 * n,
            }
        )
    store.command("INSERT INTO beacon.stats_daily FORMAT JSONEachRow\n" + "\n".join(json.dumps(r) for r in rows))
    store.command(
        "INSERT INTO beacon.goals (site, kind, value) VALUES ({s:String}, 'event', 'Signup')", {"s": DASHBOARD_SITE}
    )
    return {
        "pageviews": len(events),
        "hours": 3,
        "visitors_per_hour": 7,
        "visitors": 600,
        "visits": 720,
        "signup_visitors": 24,
        "signup_events": 30,
    }


def _drop_seed(store) -> None:
    for table in ("events", "stats_daily", "goals"):
        store.command(f"DELETE FROM beacon.{table} WHERE site = {{s:String}}", {"s": DASHBOARD_SITE})


def test_the_marketing_dashboards_queries_run_on_chdb(store):
    dashboard = json.loads((MONITORING / "grafana" / "marketing.json").read_text())
    assert {p["datasource"]["type"] for p in dashboard["panels"]} == {"grafana-clickhouse-datasource"}
    expected = _seed(store)
    try:
        until = time.time() + 60
        since = until - 30 * 86400
        results = {}
        for panel in dashboard["panels"]:
            (target,) = panel["targets"]
            results[panel["title"]] = store.rows(_grafana_sql(target["rawSql"], since, until))
        (variable,) = dashboard["templating"]["list"]
        assert (DASHBOARD_SITE,) in store.rows(variable["query"])
    finally:
        _drop_seed(store)

    assert all(results.values()), {title: rows for title, rows in results.items() if not rows}
    hourly = results["Visitors and pageviews per hour"]
    assert len(hourly) == expected["hours"] and sum(pv for _, _, pv in hourly) == expected["pageviews"]
    assert {visitors for _, visitors, _ in hourly} == {expected["visitors_per_hour"]}
    (totals,) = results["Totals (closed days)"]
    assert totals[:2] == (expected["visitors"], expected["visits"]) and totals[3] == 50  # 360 bounces of 720 visits
    assert [row[0] for row in results["Top sources"]] == ["Google", "Newsletter", "Direct / None"]
    (goal,) = results["Goal conversions (event goals)"]
    assert goal[:3] == ("Signup", expected["signup_visitors"], expected["signup_events"])
    assert goal[3] == round(100 * expected["signup_visitors"] / expected["visitors"], 1)
