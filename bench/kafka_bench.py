#!/usr/bin/env python
"""Throughput benchmark of the Kafka mode: collector → Kafka → worker → store.

    python bench/kafka_bench.py collector            # wrk → one `beacon collector` (1 and 10 beacons/request)
    python bench/kafka_bench.py worker               # pre-filled raw topic → one `beacon worker` (filter only)
    python bench/kafka_bench.py e2e                  # open-loop load → collector → worker → `beacon serve --kafka`
    python bench/kafka_bench.py all --quick          # the three, short (10 s of load, 50k beacons)
    python bench/kafka_bench.py e2e --start-broker --bootstrap 127.0.0.1:19392

Every run creates topics with unique names (``beacon topics --topic-raw kb<tag>.raw …``),
starts the processes it needs on free ports in a temporary directory, prints a
short table, stops what it started (SIGTERM), deletes its topics and consumer
groups, and exits 1 when a beacon was lost or doubled:

  collector  wrk (bench/collect.lua: the embedded benchmark's request mix) for
             --duration s against `beacon collector --kafka B --site example.com
             --trusted-proxy 127.0.0.1/32`; then waits for the spool to drain, stops
             the collector and reads the whole raw topic back: the beacons in it
             (and their distinct event ids) must equal the collector's accepted count.
  worker     produces --beacons beacons (browser UAs, documentation-range IPs, utm
             parameters…) to the raw topic in records of --record-events, with
             kafka-python and streams.records.encode_raw_batch, then starts one
             `beacon worker --kafka B --geoip DB --metrics-port P` and times how fast
             beacon_worker_events_filtered_total reaches the total; then reads the
             clean topic back (one record per raw record, every event id once).
  e2e        store (`beacon serve --kafka B --data-dir D`), worker and collector; an
             open-loop load generator (this script, in a subprocess: asyncio +
             uvloop, fixed schedule, latency measured from the scheduled send time)
             sends --rate beacons/s for --duration s; then waits until the store
             holds every accepted beacon and checks
             `SELECT count(), uniqExact(event_id) FROM beacon.events` == accepted.
             Latency beacon → stored: the store's beacon_pipeline_latency_seconds
             histogram (collector arrival of a micro-batch's first beacon → its
             INSERT returned) and, independently, the freshness of the store
             (now − max(ts)) polled every second over the control socket.

CPU is reported per process (collector / worker / store / broker / load
generator) and "rest" = everything else on the machine (other people's jobs): a
run with a large "rest" is noisy. Needs wrk for `collector` and a Kafka broker
(--bootstrap; --start-broker runs deploy/kafka/local.sh for the duration).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from serve_bench import beacon_command, free_port, http_get  # bench/ is on sys.path when run as a script

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA = BENCH_DIR / "collect.lua"
LOCAL_SH = REPO / "deploy" / "kafka" / "local.sh"
SITE = "example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --- the request mix (same as bench/collect.lua) -------------------------------------

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
]
ACCEPT_LANGUAGES = ["en-US,en;q=0.9", "fr-CA,fr;q=0.9,en;q=0.8", "de-DE,de;q=0.9", "ja,en;q=0.8", "en-GB,en;q=0.7", ""]
LANGS = ["en-US", "fr-CA", "de-DE", "ja-JP", "pt-BR"]
SCREENS = ["1920x1080", "1440x900", "390x844", "412x915", "820x1180", "2560x1440"]
PATHS = [
    "/",
    "/pricing",
    "/blog/",
    "/blog/post-{n}",
    "/docs/getting-started",
    "/docs/api/{n}",
    "/products/{n}",
    "/about",
    "/contact",
]
REFERRERS = [
    "",
    "",
    "",
    "https://www.google.com/",
    "https://www.google.com/search?q=privacy+analytics",
    "https://news.ycombinator.com/item?id={n}",
    "https://t.co/{n}",
    "https://duckduckgo.com/",
    "https://{site}/",
    "https://www.{site}/blog/",
    "android-app://com.slack/",
]
QUERIES = [
    "",
    "",
    "",
    "",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-{n}",
    "?utm_source=twitter&utm_medium=social",
    "?gclid=Cj0KCQjw{n}&utm_source=google&utm_medium=cpc",
    "?fbclid=IwAR{n}",
    "?session={n}&email=someone%40example.org",
    "?page={n}&sort=asc",
]


def _fill(rng: random.Random, s: str, site: str) -> str:
    return s.replace("{site}", site).replace("{n}", str(rng.randint(1, 9999)))


def client_ip(rng: random.Random) -> str:
    r = rng.randint(1, 100)
    if r <= 40:
        return f"203.0.113.{rng.randint(1, 254)}"  # CA, two cities
    if r <= 65:
        return f"198.51.100.{rng.randint(1, 254)}"  # FR
    if r <= 75:
        return f"2001:db8:1:{rng.randint(0, 65535):x}::{rng.randint(1, 65535):x}"  # DE
    if r <= 85:
        return f"2001:db8:2::{rng.randint(1, 65535):x}"  # JP
    if r <= 95:
        return f"192.0.2.{rng.randint(1, 254)}"  # not in the GeoIP db
    return f"198.51.100.{rng.randint(1, 254)}, 203.0.113.{rng.randint(1, 254)}"  # a proxy chain


def beacon_dict(rng: random.Random, site: str, host: str) -> dict:
    data: dict = {
        "site": site,
        "url": f"https://{host}{_fill(rng, rng.choice(PATHS), site)}{_fill(rng, rng.choice(QUERIES), site)}",
        "screen": rng.choice(SCREENS),
        "ts": int((time.time() - rng.randint(0, 5)) * 1000),
    }
    ref = _fill(rng, rng.choice(REFERRERS), site)
    if ref:
        data["referrer"] = ref
    if rng.randint(1, 100) <= 30:
        data["lang"] = rng.choice(LANGS)
    if rng.randint(1, 100) <= 10:
        data |= {
            "type": "event",
            "name": "signup",
            "props": {"plan": "pro", "seats": rng.randint(1, 50), "trial": True},
        }
    if rng.randint(1, 100) <= 5:
        data |= {"consent": {"analytics": True, "device_id": True}, "device_id": f"dev-{rng.randint(1, 10**6)}"}
    return data


def request_mix(rng: random.Random, batch: int, site: str = SITE) -> tuple[list[dict], dict[str, str]]:
    """(beacons, headers) of one request, like collect.lua's build_request."""
    host = f"www.{site}" if rng.randint(1, 100) <= 20 else site
    beacons = [beacon_dict(rng, site, host) for _ in range(batch)]
    headers = {
        "Content-Type": "text/plain;charset=UTF-8",
        "User-Agent": rng.choice(USER_AGENTS),
        "X-Forwarded-For": client_ip(rng),
        "Origin": f"https://{host}",
    }
    al = rng.choice(ACCEPT_LANGUAGES)
    if al:
        headers["Accept-Language"] = al
    r = rng.randint(1, 100)
    if r <= 3:
        headers["DNT"] = "1"
    elif r <= 5:
        headers["Sec-GPC"] = "1"
    return beacons, headers


def raw_http_request(path: str, authority: str, beacons: list[dict], headers: dict[str, str]) -> bytes:
    body = json.dumps(beacons[0] if len(beacons) == 1 else beacons, separators=(",", ":")).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- processes, metrics, CPU -------------------------------------------------------------


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def metrics(url: str) -> dict[str, float]:
    """Every series of a Prometheus text page, as {'name{labels}': value}."""
    _, body = http_get(url, timeout=10)
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def histogram(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    """[(le, cumulative count)] of a histogram, sorted, +Inf last."""
    out = []
    for key, value in m.items():
        match = re.fullmatch(re.escape(name) + r'_bucket\{le="([^"]+)"\}', key)
        if match:
            out.append((float(match.group(1)), value))
    return sorted(out)


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Linear interpolation inside the bucket, as Prometheus does; inf when above the last bound."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return float("inf")
            return prev_le + (le - prev_le) * ((target - prev_c) / (c - prev_c) if c > prev_c else 1.0)
        prev_le, prev_c = le, c
    return float("inf")


def share_at_most(buckets: list[tuple[float, float]], bound: float) -> float:
    total = buckets[-1][1] if buckets else 0
    return next((c / total for le, c in buckets if le == bound), float("nan")) if total else float("nan")


def proc_cpu_seconds(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int | None, key: str = "VmHWM") -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def system_busy_seconds() -> float:
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (for the broker's CPU)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f[9])
        except OSError:
            pass
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


class CpuMeter:
    """CPU seconds of named processes, of this script and its finished children, and of
    the whole machine, between start() and stop(); reported in cores."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids

    def _snap(self) -> tuple:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.monotonic(),
            {n: proc_cpu_seconds(p) for n, p in self.pids.items()},
            own.ru_utime + own.ru_stime,
            kids.ru_utime + kids.ru_stime,
            system_busy_seconds(),
        )

    def start(self) -> None:
        self.a = self._snap()

    def stop(self, children_name: str | None = None) -> dict[str, float]:
        """Cores per process; ``children_name``: what finished children (wrk, the load
        generator) are called; "bench" is this script; "rest" everything else."""
        b = self._snap()
        dt = b[0] - self.a[0]
        out = {n: (b[1][n] - self.a[1][n]) / dt for n in self.pids}
        if children_name:
            out[children_name] = (b[3] - self.a[3]) / dt
        out["bench"] = (b[2] - self.a[2]) / dt
        busy = (b[4] - self.a[4]) / dt
        out["rest"] = max(0.0, busy - sum(out.values()))
        out["machine"] = busy
        return {k: round(v, 2) for k, v in out.items()}


def fmt_cpu(cpu: dict[str, float]) -> str:
    parts = [f"{k} {v:.2f}" for k, v in cpu.items() if k not in ("machine",)]
    return " / ".join(parts) + f"  (machine {cpu['machine']:.2f} of {os.cpu_count()})"


class Proc:
    """A `beacon` subprocess with its log in a file."""

    def __init__(
        self,
        name: str,
        args: list[str],
        work: Path,
        ready_url: str | None = None,
        ready_log: str | None = None,
        metrics_url: str | None = None,
    ):
        self.name, self.args, self.ready_url, self.ready_log = name, args, ready_url, ready_log
        self.metrics_url = metrics_url
        self.log = work / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 120) -> Proc:
        print(f"  start {self.name}: beacon {' '.join(self.args[1:])}", flush=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if self._ready():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")

    def _ready(self) -> bool:
        if self.ready_log is not None:
            return self.ready_log in self.log.read_text(errors="replace")
        try:
            return http_get(self.ready_url, timeout=1)[0] == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        return metrics(self.metrics_url)

    def stop(self, timeout: float = 90) -> tuple[int | None, float]:
        """SIGTERM; (exit code, seconds it took)."""
        if not self.proc or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} ignored SIGTERM for {timeout} s: killed", file=sys.stderr)
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Sampler(threading.Thread):
    """Calls ``probe()`` every ``every`` s; keeps (t, result) rows."""

    def __init__(self, probe, every: float):
        super().__init__(daemon=True)
        self.probe, self.every = probe, every
        self.rows: list[tuple[float, dict]] = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self.rows.append((time.monotonic() - self.t0, self.probe()))
            except Exception:  # a sample lost under load is not worth failing the run
                pass

    def stop(self) -> None:
        self._halt.set()
        self.join()


def py_spy_start(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy not installed: no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def print_profile(raw: Path, title: str) -> None:
    from bench.serve_bench import summarize_profile

    if raw.exists():
        print(f"\npy-spy profile of the {title}:")
        print(summarize_profile(raw, 25))


# --- Kafka --------------------------------------------------------------------------------


class Kafka:
    """The broker (started with local.sh if asked) and this run's topics."""

    def __init__(self, bootstrap: str, work: Path, start: bool, partitions: int, keep: bool):
        self.bootstrap = bootstrap
        self.host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.port = int(port)
        self.started = False
        self.keep = keep
        self.env = dict(
            os.environ, KAFKA_PORT=str(self.port), KAFKA_DATA_DIR=os.environ.get("KAFKA_DATA_DIR", str(work / "kafka"))
        )
        if not port_open(self.host, self.port):
            if not start:
                sys.exit(
                    f"no Kafka broker answers on {bootstrap}: start one "
                    f"(KAFKA_PORT={self.port} bash deploy/kafka/local.sh start) or pass --start-broker"
                )
            print(
                f"starting a broker: KAFKA_PORT={self.port} KAFKA_DATA_DIR={self.env['KAFKA_DATA_DIR']} "
                f"bash deploy/kafka/local.sh start",
                flush=True,
            )
            subprocess.run(["bash", str(LOCAL_SH), "start"], env=self.env, check=True)
            self.started = True
        self.pid = listening_pid(self.port)
        self.partitions = partitions
        self.topics_made: list[str] = []
        self.groups: list[str] = []

    def topics(self, beacon: str) -> dict[str, str]:
        tag = uuid.uuid4().hex[:8]
        names = {
            "raw": f"kb{tag}.raw",
            "clean": f"kb{tag}.clean",
            "dlq": f"kb{tag}.dlq",
            "requests": f"kb{tag}.req",
            "salts": f"kb{tag}.salts",
        }
        subprocess.run(
            [
                beacon,
                "topics",
                "--kafka",
                self.bootstrap,
                "--partitions",
                str(self.partitions),
                *topic_args(names, "raw", "clean", "dlq", "requests", "salts"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.topics_made += names.values()
        return names

    def group(self) -> str:
        name = f"kb{uuid.uuid4().hex[:8]}"
        self.groups += [name, f"{name}-store"]
        return name

    def close(self) -> None:
        if not self.keep and (self.topics_made or self.groups):
            from kafka.admin import KafkaAdminClient

            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=15_000)
                try:
                    if self.topics_made:
                        admin.delete_topics(self.topics_made)
                    delete_groups = (
                        getattr(admin, "delete_groups", None) or admin.delete_consumer_groups
                    )  # kafka-python 3 / 2
                    for g in self.groups:
                        try:
                            delete_groups([g])
                        except Exception:  # a group never joined (e.g. the store's in a worker run) does not exist
                            pass
                finally:
                    admin.close()
            except Exception as exc:
                print(f"could not delete the topics {self.topics_made}: {exc!r}", file=sys.stderr)
        if self.started:
            subprocess.run(["bash", str(LOCAL_SH), "stop"], env=self.env, check=False)


def topic_args(names: dict[str, str], *kinds: str) -> list[str]:
    return [a for k in kinds for a in (f"--topic-{k}", names[k])]


def read_topic(bootstrap: str, topic: str):
    """Every record of a topic, from the beginning to the end offsets at the start: (key, value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        check_crcs=False,
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
        max_poll_records=5000,
        consumer_timeout_ms=10_000,
    )
    try:
        parts = None
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        idle = 0
        while remaining and idle < 30:
            got = consumer.poll(timeout_ms=1000)
            idle = 0 if got else idle + 1
            for tp, records in got.items():
                for r in records:
                    if r.offset < end[tp]:
                        yield r.key, r.value
            for tp in list(remaining):
                if consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def count_raw_topic(bootstrap: str, topic: str) -> dict:
    import orjson

    records = beacons = 0
    ids: set[str] = set()
    batch_ids: set[bytes] = set()
    for key, value in read_topic(bootstrap, topic):
        data = orjson.loads(value)
        records += 1
        batch_ids.add(key)
        beacons += len(data["events"])
        ids.update(e["event_id"] for e in data["events"])
    return {
        "records": records,
        "beacons": beacons,
        "distinct_event_ids": len(ids),
        "distinct_batch_ids": len(batch_ids),
    }


def count_clean_topic(bootstrap: str, topic: str) -> dict:
    import orjson

    records = rows = 0
    ids: set[str] = set()
    keys: set[bytes] = set()
    for key, value in read_topic(bootstrap, topic):
        records += 1
        keys.add(key)
        if value:
            for line in value.split(b"\n"):
                rows += 1
                ids.add(orjson.loads(line)["event_id"])
    return {"records": records, "rows": rows, "distinct_event_ids": len(ids), "distinct_keys": len(keys)}


def topic_end_offsets(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic) or ()
        tps = [TopicPartition(topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


# --- mode: collector -------------------------------------------------------------------------


def run_collector(ctx: Context, batch: int) -> dict:
    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed. On Debian/Ubuntu: apt-get update && apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(2)
    names = ctx.kafka.topics(ctx.beacon)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    coll = Proc(
        "collector",
        [
            ctx.beacon,
            "collector",
            "--kafka",
            ctx.kafka.bootstrap,
            "--site",
            SITE,
            "--port",
            str(port),
            "--trusted-proxy",
            "127.0.0.1/32",
            "--spool-dir",
            str(ctx.work / f"spool-{port}"),
            "--log-level",
            "warning",
            *topic_args(names, "raw"),
            *ctx.args.collector_opts,
        ],
        ctx.work,
        ready_url=base + "/readyz",
        metrics_url=base + "/metrics",
    )
    wrk_cmd = [
        wrk,
        f"-t{ctx.args.wrk_threads}",
        f"-c{ctx.args.connections}",
        f"-d{ctx.duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base + "/collect",
        "--",
        f"batch={batch}",
    ]
    print(f"\n== collector, {batch} beacon(s)/request ==")
    print("  load: wrk " + " ".join(wrk_cmd[1:]), flush=True)
    ctx.procs.append(coll)
    coll.start()
    m0 = coll.metrics()
    cpu = CpuMeter({"collector": coll.pid, "broker": ctx.kafka.pid})

    def probe() -> dict:
        m = coll.metrics()
        return {
            "accepted": m.get("beacon_collector_beacons_accepted_total", 0),
            "records": m.get("beacon_collector_records_produced_total", 0),
            "spool": m.get("beacon_collector_spool_bytes", 0),
            "cpu": proc_cpu_seconds(coll.pid),
            "broker_cpu": proc_cpu_seconds(ctx.kafka.pid),
        }

    sampler = Sampler(probe, ctx.args.sample_every)
    spy = py_spy_start(coll.pid, ctx.duration - 2, ctx.work / f"collector-{batch}.raw") if ctx.args.profile else None
    cpu.start()
    sampler.start()
    run = subprocess.run(wrk_cmd, capture_output=True, text=True)
    cores = cpu.stop("wrk")
    sampler.stop()
    if spy:
        spy.wait()
    if run.returncode != 0:
        raise RuntimeError(f"wrk exited with {run.returncode}: {run.stdout} {run.stderr}")
    w = parse_wrk(run.stdout)
    m1 = coll.metrics()
    # drain: until Kafka acknowledged everything spooled
    t_end = time.monotonic()
    while coll.metrics().get("beacon_collector_spool_bytes", 0) > 0 and time.monotonic() - t_end < 120:
        time.sleep(0.1)
    drain = time.monotonic() - t_end
    peak_rss = proc_rss_mib(coll.pid)
    code, stop_s = coll.stop()
    ctx.procs.remove(coll)
    accepted = int(m1["beacon_collector_beacons_accepted_total"] - m0.get("beacon_collector_beacons_accepted_total", 0))
    records_load = int(
        m1["beacon_collector_records_produced_total"] - m0.get("beacon_collector_records_produced_total", 0)
    )
    topic = count_raw_topic(ctx.kafka.bootstrap, names["raw"])
    seconds = w["duration_us"] / 1e6
    ok_requests = w["requests"] - w["non202"]
    per_record = topic["beacons"] / topic["records"] if topic["records"] else 0
    fig = {
        "mode": "collector",
        "batch": batch,
        "duration_s": round(seconds, 1),
        "connections": ctx.args.connections,
        "requests_per_s": round(ok_requests / seconds),
        "beacons_per_s": round(ok_requests * batch / seconds),
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "max_ms": w["lat_max_us"] / 1000,
        "non_202": w["non202"],
        "socket_errors": sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        "accepted_wrk": ok_requests * batch,
        "accepted_server": accepted,
        "records_acked_during_load_per_s": round(records_load / seconds),
        "beacons_per_record": round(per_record, 1),
        "acked_beacons_per_s_est": round(records_load * per_record / seconds),
        "spool_bytes_at_end_of_load": int(m1.get("beacon_collector_spool_bytes", 0)),
        "spool_drained_s": round(drain, 2),
        "stop_s": round(stop_s, 2),
        "exit": code,
        "peak_rss_mib": round(peak_rss),
        "cpu_cores": cores,
        "raw_topic": topic,
        "ok": topic["beacons"] == accepted
        and topic["distinct_event_ids"] == accepted
        and topic["distinct_batch_ids"] == topic["records"],
    }
    rows = [
        (
            "accepted beacons/s (wrk)",
            f"{fig['beacons_per_s']:,}  ({fig['requests_per_s']:,} requests/s, -c{ctx.args.connections})",
        ),
        (
            "HTTP latency p50 / p90 / p99 / p99.9",
            f"{fig['p50_ms']:.2f} / {fig['p90_ms']:.2f} / {fig['p99_ms']:.2f} / "
            f"{fig['p999_ms']:.2f} ms (max {fig['max_ms']:.0f})",
        ),
        ("non-202, socket errors", f"{fig['non_202']:,}, {fig['socket_errors']:,}"),
        (
            "acked by Kafka during the load",
            f"{fig['records_acked_during_load_per_s']:,} records/s × {per_record:.1f} "
            f"beacons/record ≈ {fig['acked_beacons_per_s_est']:,} beacons/s",
        ),
        ("spool at end of load → drained in", f"{fig['spool_bytes_at_end_of_load'] / 1024:,.0f} KiB → {drain:.2f} s"),
        ("accepted (wrk / collector)", f"{fig['accepted_wrk']:,} / {accepted:,}"),
        (
            "raw topic: beacons / distinct ids / records",
            f"{topic['beacons']:,} / {topic['distinct_event_ids']:,} / "
            f"{topic['records']:,}  ({'== accepted' if fig['ok'] else 'MISMATCH'})",
        ),
        ("collector peak RSS, SIGTERM → exit", f"{fig['peak_rss_mib']} MiB, {stop_s:.1f} s (exit {code})"),
        ("CPU cores", fmt_cpu(cores)),
    ]
    print_table(rows)
    if sampler.rows:
        print(
            f"\n  every ~{ctx.args.sample_every:g} s:  t(s)  accepted/s  acked rec/s  spool KiB  collector CPU  broker CPU"
        )
        prev = sampler.rows[0]
        for t, r in sampler.rows[1:]:
            dt = t - prev[0]
            print(
                f"                 {t:5.0f}  {(r['accepted'] - prev[1]['accepted']) / dt:10,.0f}  "
                f"{(r['records'] - prev[1]['records']) / dt:11,.0f}  {r['spool'] / 1024:9,.0f}  "
                f"{(r['cpu'] - prev[1]['cpu']) / dt:13.2f}  {(r['broker_cpu'] - prev[1]['broker_cpu']) / dt:10.2f}"
            )
            prev = (t, r)
    if ctx.args.profile:
        print_profile(ctx.work / f"collector-{batch}.raw", f"collector ({batch}/request)")
    return fig


def parse_wrk(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    raise RuntimeError("wrk printed no BENCH_JSON line:\n" + out)


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


# --- mode: worker -------------------------------------------------------------------------------


def make_raw_events(n: int, seed: int = 7):
    """n RawEvents of the request mix (as the collector makes them); the mix repeats
    every few thousand requests, the event ids are all new."""
    from schemas.events import Beacon, RawEvent, RequestContext

    rng = random.Random(seed)
    pool = []
    for _ in range(3000):
        beacons, headers = request_mix(rng, 1)
        ip = headers["X-Forwarded-For"].split(",")[-1].strip()
        pool.append((Beacon.from_valid(beacons[0]), headers, ip))
    now = time.time()
    for i in range(n):
        beacon, headers, ip = pool[i % len(pool)]
        yield RawEvent(
            str(uuid.uuid4()),
            beacon,
            RequestContext(
                received_at=now,
                ip=ip,
                user_agent=headers["User-Agent"],
                accept_language=headers.get("Accept-Language", ""),
                dnt=headers.get("DNT") == "1",
                gpc=headers.get("Sec-GPC") == "1",
            ),
        )


def prefill(bootstrap: str, topic: str, n: int, per_record: int) -> tuple[int, float]:
    from kafka import KafkaProducer

    from streams.records import RawBatch, encode_raw_batch

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        compression_type="lz4",
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=4 << 20,
        enable_idempotence=True,
    )
    t0 = time.monotonic()
    records = 0
    chunk = []
    futures = []
    for event in make_raw_events(n):
        chunk.append(event)
        if len(chunk) == per_record:
            batch = RawBatch(str(uuid.uuid4()), chunk)
            futures.append(producer.send(topic, key=batch.batch_id.encode(), value=encode_raw_batch(batch)))
            records += 1
            chunk = []
    if chunk:
        batch = RawBatch(str(uuid.uuid4()), chunk)
        futures.append(producer.send(topic, key=batch.batch_id.encode(), value=encode_raw_batch(batch)))
        records += 1
    producer.flush(timeout=300)
    for f in futures:
        f.get(timeout=0)
    producer.close()
    return records, time.monotonic() - t0


def run_worker(ctx: Context) -> dict:
    n = ctx.args.beacons or (50_000 if ctx.args.quick else 500_000)
    names = ctx.kafka.topics(ctx.beacon)
    print(f"\n== worker: {n:,} beacons in records of {ctx.args.record_events} → one `beacon worker` (filter only) ==")
    records, fill_s = prefill(ctx.kafka.bootstrap, names["raw"], n, ctx.args.record_events)
    print(f"  pre-filled {names['raw']}: {records:,} records in {fill_s:.1f} s", flush=True)
    mport = free_port()
    group = ctx.kafka.group()
    worker = Proc(
        "worker",
        [
            ctx.beacon,
            "worker",
            "--kafka",
            ctx.kafka.bootstrap,
            "--group",
            group,
            "--id-key",
            "bench-key",
            "--geoip",
            str(ctx.geoip),
            "--metrics-port",
            str(mport),
            *topic_args(names, "raw", "clean", "dlq", "requests", "salts"),
            *ctx.args.worker_opts,
        ],
        ctx.work,
        ready_log="[^Worker]: Ready",
        metrics_url=f"http://127.0.0.1:{mport}/metrics",
    )
    ctx.procs.append(worker)
    t_start = time.monotonic()
    worker.start()
    t_ready = time.monotonic()
    cpu = CpuMeter({"worker": worker.pid, "broker": ctx.kafka.pid})
    cpu.start()
    spy = py_spy_start(worker.pid, ctx.args.profile_seconds, ctx.work / "worker.raw") if ctx.args.profile else None
    samples: list[tuple[float, float, float]] = []  # (t, filtered, worker cpu)
    deadline = time.monotonic() + max(600, n / 500)
    done = None
    while time.monotonic() < deadline:
        try:
            v = worker.metrics().get("beacon_worker_events_filtered_total", 0)
        except OSError:
            v = samples[-1][1] if samples else 0
        samples.append((time.monotonic(), v, proc_cpu_seconds(worker.pid)))
        if v >= n:
            done = samples[-1][0]
            break
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.tail()}")
        time.sleep(0.25)
    cores = cpu.stop()
    if spy:
        spy.wait()
    peak_rss = proc_rss_mib(worker.pid)
    code, stop_s = worker.stop()
    ctx.procs.remove(worker)
    if done is None:
        raise RuntimeError(f"the worker filtered {samples[-1][1]:,.0f} of {n:,} in the time allowed:\n{worker.tail()}")
    first = next(s for s in samples if s[1] > 0)
    # the sample before the first non-zero one bounds the start from below
    before_first = samples[max(0, samples.index(first) - 1)]
    consume_s = done - before_first[0]
    lo = next(s for s in samples if s[1] >= 0.1 * n)
    hi = next(s for s in samples if s[1] >= 0.9 * n)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else float("nan")
    worker_cpu = (samples[-1][2] - before_first[2]) / consume_s
    clean = count_clean_topic(ctx.kafka.bootstrap, names["clean"])
    dlq = topic_end_offsets(ctx.kafka.bootstrap, names["dlq"])
    fig = {
        "mode": "worker",
        "beacons": n,
        "records": records,
        "record_events": ctx.args.record_events,
        "partitions": ctx.kafka.partitions,
        "prefill_s": round(fill_s, 1),
        "startup_to_ready_s": round(t_ready - t_start, 1),
        "consume_s": round(consume_s, 1),
        "beacons_per_s": round(n / consume_s),
        "beacons_per_s_10_90": round(steady),
        "worker_cpu_cores_while_consuming": round(worker_cpu, 2),
        "cpu_cores": cores,
        "peak_rss_mib": round(peak_rss),
        "stop_s": round(stop_s, 1),
        "exit": code,
        "clean_topic": clean,
        "dlq_records": dlq,
        "ok": clean["rows"] == n
        and clean["distinct_event_ids"] == n
        and clean["records"] == records
        and clean["distinct_keys"] == records
        and dlq == 0,
    }
    rows = [
        (
            "filtered beacons/s (whole run)",
            f"{fig['beacons_per_s']:,}  ({n:,} in {consume_s:.1f} s, first beacon → last)",
        ),
        ("filtered beacons/s (10 % → 90 %)", f"{fig['beacons_per_s_10_90']:,}"),
        ("worker start → Ready", f"{fig['startup_to_ready_s']} s (not counted above)"),
        (
            "clean topic: records / rows / distinct ids",
            f"{clean['records']:,} / {clean['rows']:,} / {clean['distinct_event_ids']:,}"
            f"  ({'== raw' if fig['ok'] else 'MISMATCH'}); DLQ {dlq}",
        ),
        ("worker CPU while consuming", f"{worker_cpu:.2f} cores; peak RSS {fig['peak_rss_mib']} MiB"),
        ("CPU cores (Ready → done)", fmt_cpu(cores)),
    ]
    print_table(rows)
    if ctx.args.profile:
        print_profile(ctx.work / "worker.raw", "worker")
    return fig


# --- mode: e2e ------------------------------------------------------------------------------------


def run_e2e(ctx: Context) -> dict:
    from storage.control import connect_if_served

    names = ctx.kafka.topics(ctx.beacon)
    group = ctx.kafka.group()
    data_dir = ctx.work / "store-data"
    sport, mport, cport = free_port(), free_port(), free_port()
    print(f"\n== end to end: {ctx.args.rate:,} beacons/s ({ctx.args.e2e_batch}/request) for {ctx.duration} s ==")
    store = Proc(
        "store",
        [
            ctx.beacon,
            "serve",
            "--kafka",
            ctx.kafka.bootstrap,
            "--data-dir",
            str(data_dir),
            "--port",
            str(sport),
            "--group",
            group,
            *topic_args(names, "clean"),
            *ctx.args.store_opts,
        ],
        ctx.work,
        ready_url=f"http://127.0.0.1:{sport}/readyz",
        metrics_url=f"http://127.0.0.1:{sport}/metrics",
    )
    worker = Proc(
        "worker",
        [
            ctx.beacon,
            "worker",
            "--kafka",
            ctx.kafka.bootstrap,
            "--group",
            group,
            "--id-key",
            "bench-key",
            "--geoip",
            str(ctx.geoip),
            "--metrics-port",
            str(mport),
            *topic_args(names, "raw", "clean", "dlq", "requests", "salts"),
            *ctx.args.worker_opts,
        ],
        ctx.work,
        ready_log="[^Worker]: Ready",
        metrics_url=f"http://127.0.0.1:{mport}/metrics",
    )
    coll = Proc(
        "collector",
        [
            ctx.beacon,
            "collector",
            "--kafka",
            ctx.kafka.bootstrap,
            "--site",
            SITE,
            "--port",
            str(cport),
            "--trusted-proxy",
            "127.0.0.1/32",
            "--spool-dir",
            str(ctx.work / f"spool-{cport}"),
            "--log-level",
            "warning",
            *topic_args(names, "raw"),
            *ctx.args.collector_opts,
        ],
        ctx.work,
        ready_url=f"http://127.0.0.1:{cport}/readyz",
        metrics_url=f"http://127.0.0.1:{cport}/metrics",
    )
    for p in (store, worker, coll):
        ctx.procs.append(p)
        p.start()
    time.sleep(3)  # let the consumer groups settle
    remote = connect_if_served(data_dir)

    def probe() -> dict:
        t = time.time()
        newest, count = remote.rows("SELECT toUnixTimestamp64Milli(max(ts)), count() FROM beacon.events")[0]
        cm, wm, sm = coll.metrics(), worker.metrics(), store.metrics()
        return {
            "lag": (t - newest / 1000) if count else None,
            "stored_q": count,
            "accepted": cm.get("beacon_collector_beacons_accepted_total", 0),
            "spool": cm.get("beacon_collector_spool_bytes", 0),
            "filtered": wm.get("beacon_worker_events_filtered_total", 0),
            "stored": sm.get("beacon_sink_rows_total", 0),
            "cpu": {p.name: proc_cpu_seconds(p.pid) for p in (coll, worker, store)},
        }

    loadgen_cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_loadgen",
        "--url",
        f"http://127.0.0.1:{cport}/collect",
        "--rate",
        str(ctx.args.rate),
        "--batch",
        str(ctx.args.e2e_batch),
        "--duration",
        str(ctx.duration),
        "--connections",
        str(ctx.args.connections),
    ]
    print("  load: " + " ".join(loadgen_cmd[1:]), flush=True)
    sm0 = store.metrics()
    sampler = Sampler(probe, 1.0)
    cpu = CpuMeter({"collector": coll.pid, "worker": worker.pid, "store": store.pid, "broker": ctx.kafka.pid})
    spies = []
    if ctx.args.profile:
        spies = [
            (p.name, py_spy_start(p.pid, ctx.duration - 2, ctx.work / f"e2e-{p.name}.raw"))
            for p in (coll, worker, store)
        ]
    cpu.start()
    sampler.start()
    t_load = time.monotonic()
    lg = subprocess.run(loadgen_cmd, capture_output=True, text=True)
    load_s = time.monotonic() - t_load
    cores = cpu.stop("loadgen")
    if lg.returncode != 0:
        raise RuntimeError(f"load generator failed: {lg.stderr}")
    gen = json.loads(lg.stdout.strip().splitlines()[-1])
    at_end = probe()
    # wait until the store holds what the collector accepted
    t_end = time.monotonic()
    accepted = int(coll.metrics()["beacon_collector_beacons_accepted_total"])
    while time.monotonic() - t_end < 180:
        if store.metrics().get("beacon_sink_rows_total", 0) >= accepted:
            break
        time.sleep(0.2)
    drain = time.monotonic() - t_end
    time.sleep(2)  # a duplicate insert would show up now
    sampler.stop()
    for _, spy in spies:
        if spy:
            spy.wait()
    sm1 = store.metrics()
    out = subprocess.run(
        [
            ctx.beacon,
            "query",
            "--data-dir",
            str(data_dir),
            "--format",
            "json",
            "SELECT count() AS n, uniqExact(event_id) AS u, uniqExact(batch_id) AS b, "
            "countIf(country_code != '') AS geo FROM beacon.events",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    q = json.loads(out.splitlines()[0])
    remote.close()
    rss = {p.name: round(proc_rss_mib(p.pid)) for p in (coll, worker, store)}
    stops = {}
    for p in (coll, worker, store):
        stops[p.name] = p.stop()
        ctx.procs.remove(p)
    # latency histogram of this run (the store process is fresh, but subtract the start anyway)
    h1 = histogram(sm1, "beacon_pipeline_latency_seconds")
    h0 = dict(histogram(sm0, "beacon_pipeline_latency_seconds"))
    buckets = [(le, c - h0.get(le, 0)) for le, c in h1]
    lags = [r["lag"] for t, r in sampler.rows if r.get("lag") is not None and 5 <= t <= load_s]
    lags.sort()

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    # stored during the load window: rows stored between the first and the last sample inside it
    inside = [(t, r) for t, r in sampler.rows if t <= load_s]
    stored_rate = acc_rate = float("nan")
    if len(inside) >= 2:
        (ta, ra), (tb, rb) = inside[0], inside[-1]
        stored_rate = (rb["stored"] - ra["stored"]) / (tb - ta)
        acc_rate = (rb["accepted"] - ra["accepted"]) / (tb - ta)
    n_stored, n_unique = int(q["n"]), int(q["u"])
    fig = {
        "mode": "e2e",
        "rate_target": ctx.args.rate,
        "batch": ctx.args.e2e_batch,
        "duration_s": ctx.duration,
        "load_s": round(load_s, 1),
        "loadgen": gen,
        "accepted": accepted,
        "accepted_per_s": round(acc_rate),
        "stored_per_s_during_load": round(stored_rate),
        "backlog_at_end_of_load": int(at_end["accepted"] - at_end["stored"]),
        "drain_s": round(drain, 1),
        "stored": n_stored,
        "distinct_event_ids": n_unique,
        "distinct_batches": int(q["b"]),
        "rows_with_country": int(q["geo"]),
        "latency_hist_p50_s": round(histogram_quantile(buckets, 0.5), 3),
        "latency_hist_p95_s": round(histogram_quantile(buckets, 0.95), 3),
        "latency_hist_p99_s": round(histogram_quantile(buckets, 0.99), 3),
        "latency_hist_le_2s": round(share_at_most(buckets, 2.0), 4),
        "latency_hist_samples": int(buckets[-1][1]) if buckets else 0,
        "freshness_p50_s": round(pct(lags, 0.5), 3),
        "freshness_p95_s": round(pct(lags, 0.95), 3),
        "freshness_max_s": round(lags[-1], 3) if lags else None,
        "cpu_cores": cores,
        "peak_rss_mib": rss,
        "stop": {k: {"exit": v[0], "s": round(v[1], 1)} for k, v in stops.items()},
        "ok": n_stored == accepted and n_unique == accepted,
    }
    rows = [
        (
            "sent (load generator)",
            f"{gen['sent_beacons'] / gen['seconds']:,.0f} beacons/s ({gen['sent']:,} requests, "
            f"{gen['ok']:,} × 202, {gen['non202']:,} other, {gen['errors']:,} errors); "
            f"{gen['behind_s']:.2f} s behind the schedule of {ctx.args.rate:,}/s at the end",
        ),
        (
            "HTTP latency p50 / p99 / p99.9 (from schedule)",
            f"{gen['p50_ms']:.1f} / {gen['p99_ms']:.1f} / {gen['p999_ms']:.1f} ms",
        ),
        ("accepted beacons/s (collector, during load)", f"{fig['accepted_per_s']:,}"),
        ("stored beacons/s (store, during load)", f"{fig['stored_per_s_during_load']:,}"),
        ("backlog at end of load → stored after", f"{fig['backlog_at_end_of_load']:,} → {drain:.1f} s"),
        (
            "stored / distinct event ids / accepted",
            f"{n_stored:,} / {n_unique:,} / {accepted:,}  "
            f"({'OK: nothing lost or doubled' if fig['ok'] else 'MISMATCH'})",
        ),
        (
            "arrival → stored, histogram p50 / p95 / p99",
            f"{fig['latency_hist_p50_s']} / {fig['latency_hist_p95_s']} / {fig['latency_hist_p99_s']} s; "
            f"{fig['latency_hist_le_2s']:.1%} ≤ 2 s ({fig['latency_hist_samples']:,} batches)",
        ),
        (
            "store freshness now − max(ts), p50 / p95 / max",
            f"{fig['freshness_p50_s']} / {fig['freshness_p95_s']} / {fig['freshness_max_s']} s (polled every 1 s)",
        ),
        ("peak RSS MiB", ", ".join(f"{k} {v}" for k, v in rss.items())),
        ("CPU cores", fmt_cpu(cores)),
    ]
    print_table(rows)
    if sampler.rows:
        print("\n  every ~1 s:  t(s)  accepted/s  filtered/s   stored/s  spool KiB  freshness s  CPU coll/work/store")
        prev = sampler.rows[0]
        step = max(1, len(sampler.rows) // 20)
        for i in range(step, len(sampler.rows), step):
            t, r = sampler.rows[i]
            pt, pr = prev
            dt = t - pt
            c = "/".join(f"{(r['cpu'][k] - pr['cpu'][k]) / dt:.2f}" for k in ("collector", "worker", "store"))
            lag = f"{r['lag']:.2f}" if r.get("lag") is not None else "-"
            print(
                f"             {t:5.0f}  {(r['accepted'] - pr['accepted']) / dt:10,.0f}  {(r['filtered'] - pr['filtered']) / dt:10,.0f}"
                f"  {(r['stored'] - pr['stored']) / dt:9,.0f}  {r['spool'] / 1024:9,.0f}  {lag:>11}  {c}"
            )
            prev = (t, r)
    if ctx.args.profile:
        for name in ("collector", "worker", "store"):
            print_profile(ctx.work / f"e2e-{name}.raw", f"{name} (e2e)")
    return fig


# --- the open-loop load generator (a subprocess of e2e) -----------------------------------------


async def _loadgen(url: str, rate: float, batch: int, duration: float, connections: int, pool_size: int = 4096) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname, parts.port, parts.path
    rng = random.Random(42)
    pool = [raw_http_request(path, f"{host}:{port}", *request_mix(rng, batch)) for _ in range(pool_size)]
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    req_rate = rate / batch
    total = int(req_rate * duration)
    lat: list[float] = []
    counts = collections.Counter()

    async def conn(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = k
        while True:
            scheduled = await queue.get()
            if scheduled is None:
                break
            writer.write(pool[i % pool_size])
            i += connections
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                low = head.lower()
                if b"transfer-encoding: chunked" in low:
                    while True:
                        size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    m = re.search(rb"content-length: *(\d+)", low)
                    if m:
                        await reader.readexactly(int(m.group(1)))
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                counts["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            lat.append(loop.time() - scheduled)
            counts["ok" if status == 202 else "non202"] += 1
        writer.close()

    tasks = [asyncio.create_task(conn(k)) for k in range(connections)]
    await asyncio.sleep(0.2)
    start = loop.time()
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - start) * req_rate) + 1)
        while sent < due:
            queue.put_nowait(start + sent / req_rate)
            sent += 1
        await asyncio.sleep(0.001)
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    seconds = loop.time() - start
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "sent": sent,
        "sent_beacons": sent * batch,
        "ok": counts["ok"],
        "non202": counts["non202"],
        "errors": counts["errors"],
        "seconds": round(seconds, 2),
        "behind_s": round(seconds - duration, 2),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
    }


def loadgen_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kafka_bench.py _loadgen")
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="beacons/s")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--connections", type=int, default=64)
    a = ap.parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(_loadgen(a.url, a.rate, a.batch, a.duration, a.connections))))
    return 0


# --- main ---------------------------------------------------------------------------------------


class Context:
    def __init__(self, args, beacon: str, work: Path, kafka: Kafka, geoip: Path):
        self.args, self.beacon, self.work, self.kafka, self.geoip = args, beacon, work, kafka, geoip
        self.duration = 10 if args.quick else args.duration
        self.procs: list[Proc] = []


def machine() -> str:
    model = ""
    try:
        model = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), ""
        )
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 1024 / 1024
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem:.1f} GiB"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_loadgen":
        return loadgen_main(sys.argv[2:])
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Options of the processes: --collector-opt/--worker-opt/--store-opt "--flag value" (repeatable).',
    )
    ap.add_argument("mode", choices=["collector", "worker", "e2e", "all"])
    ap.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"),
        help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP, else 127.0.0.1:$KAFKA_PORT or 9092)",
    )
    ap.add_argument(
        "--start-broker",
        action="store_true",
        help="start a local broker with deploy/kafka/local.sh (port of "
        "--bootstrap, data in the temporary directory unless $KAFKA_DATA_DIR) and stop it at the end",
    )
    ap.add_argument("--quick", action="store_true", help="10 s of load, 50k beacons for `worker`")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load (collector, e2e; default 60)")
    ap.add_argument("--partitions", type=int, default=6, help="partitions of the run's topics (default 6)")
    ap.add_argument(
        "--batch", default="1,10", help="collector: beacons per request, comma-separated runs (default 1,10)"
    )
    ap.add_argument("--connections", type=int, default=32, help="wrk / load generator connections (default 32)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument(
        "--beacons", type=int, default=0, help="worker: beacons to pre-fill (default 500,000; --quick 50,000)"
    )
    ap.add_argument("--record-events", type=int, default=200, help="worker: beacons per raw record (default 200)")
    ap.add_argument("--rate", type=int, default=5000, help="e2e: offered beacons/s (default 5000)")
    ap.add_argument("--e2e-batch", type=int, default=1, help="e2e: beacons per request (default 1)")
    ap.add_argument("--collector-opt", dest="collector_opts", action="append", default=[], type=shlex.split)
    ap.add_argument("--worker-opt", dest="worker_opts", action="append", default=[], type=shlex.split)
    ap.add_argument("--store-opt", dest="store_opts", action="append", default=[], type=shlex.split)
    ap.add_argument("--profile", action="store_true", help="sample the processes with py-spy during the load")
    ap.add_argument("--profile-seconds", type=int, default=20, help="worker: seconds of py-spy (default 20)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="collector: seconds between samples (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory, topics and groups")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    for k in ("collector_opts", "worker_opts", "store_opts"):
        setattr(args, k, [x for chunk in getattr(args, k) for x in chunk])

    beacon = beacon_command()
    work = Path(tempfile.mkdtemp(prefix="beacon-kbench-"))
    from tests.geoip import write_city_db

    geoip = write_city_db(work / "city.mmdb")
    print(f"machine: {machine()}; work dir {work}; Kafka {args.bootstrap}")
    kafka = Kafka(args.bootstrap, work, args.start_broker, args.partitions, args.keep)
    ctx = Context(args, beacon, work, kafka, geoip)
    figures: list[dict] = []
    failed = False
    try:
        if args.mode in ("collector", "all"):
            for b in (int(x) for x in args.batch.split(",")):
                figures.append(run_collector(ctx, b))
        if args.mode in ("worker", "all"):
            figures.append(run_worker(ctx))
        if args.mode in ("e2e", "all"):
            figures.append(run_e2e(ctx))
    except Exception as exc:
        failed = True
        print(f"\nFAILED: {exc}", file=sys.stderr)
        for p in ctx.procs:
            print(f"--- {p.name} log ({p.log}):\n{p.tail(20)}", file=sys.stderr)
    finally:
        for p in reversed(ctx.procs):
            p.stop(timeout=60)
        kafka.close()
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "figures": figures}, indent=2) + "\n")
    if args.keep or failed:
        print(f"\nwork directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    bad = [f for f in figures if not f["ok"]]
    for f in bad:
        print(f"FAIL ({f['mode']}): lost or doubled beacons, see above", file=sys.stderr)
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
