"""`beacon status` against running processes: its view under a known load, and with
a collector whose Kafka is unreachable, as text (compared with a snapshot once the
numbers, ports and paths are masked), as JSON, and its exit status."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.kafka.pipeline import Process
from tests.load import CHROME, Load, near, until
from tests.server import BEACON, BeaconServer, cli, free_port

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _status(*args: str) -> subprocess.CompletedProcess:
    # A wide terminal: rich wraps at the width it is given.
    return subprocess.run(
        [*BEACON, "status", *args], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "160"}
    )


def masked(text: str, data_dir: Path) -> str:
    """The view with what changes from run to run masked: URLs, the data directory,
    times, numbers (with their units), and the padding rich adds around them."""
    text = text.replace(str(data_dir), "DATA_DIR")
    text = re.sub(r"http://127\.0\.0\.1:\d+", "URL", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "TIME", text)
    text = re.sub(r"\d[\d,]*(\.\d+)?( ?%)?( (B|KiB|MiB|GiB|s|min|h)\b)?", "N", text)
    text = re.sub(r"─+", "─", text)
    return "\n".join(re.sub(r" +", " ", line).strip() for line in text.splitlines()).strip() + "\n"


def _matches_snapshot(text: str, name: str) -> None:
    expected = (SNAPSHOTS / name).read_text()
    assert text == expected, f"--- snapshot {name}\n{expected}\n--- now\n{text}"


def test_status_of_beacon_serve_under_a_known_load(tmp_path):
    with BeaconServer(tmp_path / "data") as server:
        data = ["--data-dir", str(server.data_dir)]
        cli("sites", "add", "example.com", *data)
        load = Load(server.url, per_second=30).start()
        try:
            until(lambda: len(load.accepted) > 60, 20, "load running")
            shown = _status("--url", server.url, *data, "--interval", "3")
            as_json = _status("--url", server.url, *data, "--interval", "3", "--json")
            rate = load.rate(3)
            watched, watch_exit = _watch_in_a_terminal("--url", server.url, *data, "--interval", "0.5")
        finally:
            load.stop()
    assert shown.returncode == 0, shown.stdout + shown.stderr
    _matches_snapshot(masked(shown.stdout, server.data_dir), "status_serve.txt")

    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["healthy"] is True and status["problems"] == []
    assert near(status["collector_accepted"], rate, 0.35) and near(status["sink_stored"], rate, 0.35)
    assert status["collector_rejected"] == {} and status["filter_dropped"] == {}
    assert status["processes"] == [{"url": server.url, "answered": True, "ready": True, "failing": [], "error": ""}]
    store = status["store"]
    assert 0 < store["rows_last_minute"] <= len(load.accepted) and store["last_event_age"] < 5
    assert store["ttl_days"]["events"] == 730 and store["ttl_days"]["dead_letters"] == 730 and store["disk_bytes"] > 0
    assert 0 <= status["salt_age"] < 86400  # today's salt, made at start-up

    # --watch: the view redrawn in place (the cursor moved up over the last one), until Ctrl-C.
    assert watch_exit == 0 and watched.count(b"beacon status") >= 3 and b"\x1b[1A" in watched


def _watch_in_a_terminal(*args: str, seconds: float = 3.0) -> tuple[bytes, int]:
    """Run `beacon status --watch` in a pseudo-terminal, then press Ctrl-C."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        [*BEACON, "status", "--watch", *args],
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "160", "LINES": "60"},
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + seconds
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGINT)
            deadline = float("inf")
        if select.select([master], [], [], 0.2)[0]:
            try:
                output += os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
    os.close(master)
    return output, process.wait(10)


def test_status_names_a_collector_whose_kafka_is_unreachable(tmp_path):
    port = free_port()
    collector = Process(
        "collector",
        [
            "collector",
            "--kafka",
            f"127.0.0.1:{free_port()}",
            "--site",
            "example.com",
            "--port",
            str(port),
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        tmp_path,
        ready_log="collector serving",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as http:
            for i in range(20):  # accepted into the spool while Kafka is away
                body = json.dumps([{"site": "example.com", "url": f"https://example.com/{i}/{k}"} for k in range(10)])
                answer = http.post(
                    f"{url}/collect", content=body, headers={"Content-Type": "text/plain", "User-Agent": CHROME}
                )
                assert answer.json() == {"accepted": 10}
        until(lambda: b"beacon_collector_spool_bytes 0.0" not in httpx.get(f"{url}/metrics").content, 10, "spooled")
        shown = _status("--url", url, "--data-dir", str(tmp_path / "no-store"), "--interval", "1")
        as_json = _status("--url", url, "--data-dir", str(tmp_path / "no-store"), "--interval", "1", "--json")
    finally:
        collector.kill()  # SIGTERM would try for 30 s to deliver the spool
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"✗ {url} is not ready: kafka failing" in shown.stdout
    _matches_snapshot(masked(shown.stdout, tmp_path / "no-store"), "status_collector_without_kafka.txt")

    assert as_json.returncode == 1
    status = json.loads(as_json.stdout)
    assert status["processes"][0]["failing"] == ["kafka"] and status["spool_bytes"] > 0
    assert status["spool_limit_bytes"] == 1 << 30 and status["spool_stalled_seconds"] >= 1  # the --interval
    assert status["store"] is None and "no server owns" in status["store_error"]


def _reading(url: str, at: float, samples: dict[str, float], checks: dict[str, bool] | None = None, error: str = ""):
    from beacon.status import Reading

    parsed = {}
    for series, value in samples.items():
        name, _, labels = series.partition("{")
        pairs = tuple(sorted(tuple(p.split("=")) for p in labels.rstrip("}").split(",") if p))
        parsed[(name, pairs)] = value
    return Reading(url, at, error, None if checks is None else all(checks.values()), checks or {}, parsed)


def test_rates_problems_and_warnings_from_readings():
    """The view's arithmetic on readings made here: a counter that went back (a
    restart) counts from zero; each unhealthy cause is named once."""
    from beacon.status import Readings, StoreFacts, build

    now = 1_800_000_000.0
    day = now - now % 86400
    readings = Readings(["http://a", "http://b", "http://c"])
    readings.history["http://a"] = [
        _reading(
            "http://a",
            now - 10,
            {
                "beacon_collector_beacons_accepted_total": 500,
                "beacon_collector_rejected_total{reason=schema}": 10,
                "beacon_collector_records_produced_total": 7,
            },
        ),
        _reading(
            "http://a",
            now,
            {
                "beacon_collector_beacons_accepted_total": 1500,
                "beacon_collector_rejected_total{reason=schema}": 30,
                "beacon_collector_spool_bytes": 600,
                "beacon_collector_spool_limit_bytes": 1000,
                "beacon_collector_records_produced_total": 7,
            },
            checks={"kafka": False, "sites": True},
        ),
    ]
    readings.history["http://b"] = [
        _reading(
            "http://b",
            now - 10,
            {"beacon_sink_rows_total": 9000, "beacon_filter_actions_total{action=ip_truncated}": 9000},
        ),
        _reading(
            "http://b",
            now,
            {
                "beacon_sink_rows_total": 400,  # restarted: 400 since
                "beacon_filter_actions_total{action=ip_truncated}": 9400,
                "beacon_filter_actions_total{action=bot_dropped}": 50,
                "beacon_sink_retrying": 1,
                "beacon_visitor_salt_newest_day_timestamp_seconds": day - 86400,
                "beacon_visitor_salt_oldest_day_timestamp_seconds": day - 2 * 86400,
            },
        ),
    ]
    readings.history["http://c"] = [_reading("http://c", now, {}, error="Connection refused")]
    facts = StoreFacts(
        rows_last_minute=0,
        last_event_age=700.0,
        ttl_days={"events": 730},
        disk_bytes=1,
        dead_letters_waiting={"value_refused": 2},
    )
    status = build(readings, facts)

    assert status.rates_over_seconds == 10
    assert (status.collector_accepted, status.collector_rejected) == (100, {"schema": 2})
    assert (status.sink_stored, status.filter_kept, status.filter_dropped) == (40, 40, {"bot": 5})
    assert status.spool_stalled_seconds == 10  # no record delivered between the readings
    assert status.problems == [
        "http://a is not ready: kafka failing",
        "http://a: spool at 60% of its limit (Kafka is not taking the beacons)",
        "http://b: the sink is retrying a failing store",
        f"http://b: newest visitor salt {(now - day + 86400) / 3600:.1f} h old: today's is missing",
        f"http://b: a visitor salt is kept {(now - day + 2 * 86400) / 3600:.1f} h, beyond 48 h",
        "http://c does not answer (Connection refused)",
    ]
    assert status.warnings == ["dead letters waiting in the store: value_refused 2 (beacon dlq list)"]
    assert status.as_json()["healthy"] is False

    readings.history["http://b"][-1].samples[("beacon_sink_rows_total", ())] = 9000  # stored nothing since
    assert build(readings, facts).problems[-1] == "beacons are accepted (100.0/s) but nothing was stored for 12 min"
