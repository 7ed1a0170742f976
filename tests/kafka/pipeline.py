"""Run the Kafka deployment's processes (collector, worker, store) for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.server import BEACON, cli, free_port

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
SITE = "example.com"
# A site whose days are cut in Toronto: the collector stamps its zone on each beacon
# (``--site DOMAIN=ZONE``, as it would read it from a store's registered sites).
ZONED_SITE, ZONE = "toronto.example", "America/Toronto"
LOCAL_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "local.sh"


class Process:
    """A beacon subprocess with its log in a file."""

    def __init__(
        self, name: str, args: list[str], workdir: Path, ready_url: str | None = None, ready_log: str | None = None
    ):
        self.name, self.args, self.ready_url, self.ready_log = name, args, ready_url, ready_log
        self.log = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Process:
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen([*BEACON, *self.args], stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def _ready(self) -> bool:
        if self.ready_log is not None:
            return self.ready_log in self.log.read_text(errors="replace")
        try:
            return httpx.get(self.ready_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return self.proc.returncode if self.proc else 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Deployment:
    """Topics with unique names, plus the processes of one test, all torn down after it."""

    def __init__(self, workdir: Path, bootstrap: str = BOOTSTRAP, partitions: int = 6):
        self.workdir = workdir
        self.bootstrap = bootstrap
        tag = uuid.uuid4().hex[:8]
        self.topics = {
            "raw": f"t{tag}.raw",
            "clean": f"t{tag}.clean",
            "dlq": f"t{tag}.dlq",
            "requests": f"t{tag}.req",
            "salts": f"t{tag}.salts",
        }
        self.group = f"g{tag}"
        self.data_dir = workdir / "store"
        self.processes: list[Process] = []
        cli(
            "topics",
            "--kafka",
            bootstrap,
            "--partitions",
            str(partitions),
            *self._topic_args("raw", "clean", "dlq", "requests", "salts"),
        )

    def _topic_args(self, *kinds: str) -> list[str]:
        return [arg for kind in kinds for arg in (f"--topic-{kind}", self.topics[kind])]

    def store(self) -> Process:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        return self._add(
            Process(
                "store",
                [
                    "serve",
                    "--kafka",
                    self.bootstrap,
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(port),
                    "--group",
                    self.group,
                    "--flush-interval",
                    "0.5",
                    *self._topic_args("clean"),
                ],
                self.workdir,
                ready_url=f"http://127.0.0.1:{port}/readyz",
            )
        )

    def worker(self, name: str = "worker") -> Process:
        self.metrics_port = free_port()
        process = Process(
            name,
            [
                "worker",
                "--kafka",
                self.bootstrap,
                "--group",
                self.group,
                "--id-key",
                "test-key",
                "--metrics-port",
                str(self.metrics_port),
                *self._topic_args("raw", "clean", "dlq", "requests", "salts"),
            ],
            self.workdir,
            ready_log="[^Worker]: Ready",
        )
        process.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return self._add(process)

    def collector(self, spool_dir: Path | None = None) -> Process:
        port = free_port()
        process = Process(
            "collector",
            [
                "collector",
                "--kafka",
                self.bootstrap,
                "--site",
                SITE,
                "--site",
                f"{ZONED_SITE}={ZONE}",
                "--port",
                str(port),
                "--spool-dir",
                str(spool_dir or self.workdir / f"spool-{port}"),
                "--trusted-proxy",
                "127.0.0.1/32",
                "--id-key",
                "test-key",
                *self._topic_args("raw", "requests"),
            ],
            self.workdir,
            ready_url=f"http://127.0.0.1:{port}/readyz",
        )
        process.url = f"http://127.0.0.1:{port}"
        return self._add(process)

    def _add(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def stored(self, sql: str = "SELECT count() AS n, uniqExact(event_id) AS u FROM beacon.events") -> list[dict]:
        out = cli("query", "--data-dir", str(self.data_dir), "--format", "json", sql).stdout
        return [json.loads(line) for line in out.splitlines() if line]

    def wait_stored(self, n: int, timeout: float = 120) -> dict:
        """The stored count once it has reached ``n`` and the pipeline has caught up
        (``caught_up``): then nothing is on its way, so a duplicate or an event that
        should not be is counted too. Call it once the beacons are sent."""
        deadline = time.monotonic() + timeout
        row = {}
        while time.monotonic() < deadline:
            if self.caught_up():  # read before the count: what it saw committed is stored
                row = self.stored()[0]
                if row["n"] >= n:
                    return row
            time.sleep(0.5)
        logs = "\n\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.processes)
        raise AssertionError(f"stored {row} of {n} after {timeout}s\n{logs}")

    def caught_up(self) -> bool:
        """The workers' group has committed every record of the raw topic, and then the
        store's group every record of the clean topic. Once the collectors have stopped
        (the raw topic is final), nothing is on its way to beacon.events any more. Raw
        first: the clean topic only stops growing once the workers are done with raw (a
        worker flushes its sends to clean before it commits raw: streams/worker.py)."""
        return (
            group_lag(self.bootstrap, self.group, self.topics["raw"]) == 0
            and group_lag(self.bootstrap, f"{self.group}-store", self.topics["clean"]) == 0
        )

    def stored_paths(self, timeout: float = 60) -> list[dict]:
        """``SELECT path, count() AS n … GROUP BY path`` (what tests.faults.exactly_once
        takes), once the pipeline has caught up (``caught_up``): call it after the
        collectors have stopped, so that no duplicate can still be on its way."""
        deadline = time.monotonic() + timeout
        while not self.caught_up():
            if time.monotonic() > deadline:
                logs = "\n\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.processes)
                raise AssertionError(f"the pipeline did not catch up in {timeout}s: stored {self.stored()}\n{logs}")
            time.sleep(0.5)
        return self.stored("SELECT path, count() AS n FROM beacon.events GROUP BY path")

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop(timeout=30)
            except AssertionError:
                pass
            process.kill()


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that consumer ``group`` has not committed, as the broker
    sees it (a partition the group never committed on counts from offset 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, allow_auto_create_topics=False
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"no partitions for {topic}"
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
        done = {tp: max(0, committed[tp].offset) if tp in committed else 0 for tp in partitions}
        return sum(ends[tp] - done[tp] for tp in partitions)
    finally:
        consumer.close()
        admin.close()


class LocalBroker:
    """A broker of a test's own (deploy/kafka/local.sh), for faults that stop it: the
    suite's shared broker must stay up for the other tests."""

    def __init__(self, data_dir: Path):
        port = free_port()  # both free now, kept across a stop and a start
        controller = next(other for other in iter(free_port, None) if other != port)
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = os.environ | {
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(controller),
            "KAFKA_DATA_DIR": str(data_dir),
        }

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def _run(self, action: str) -> None:
        done = subprocess.run(
            ["bash", str(LOCAL_SH), action], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"local.sh {action} failed:\n{done.stdout}\n{done.stderr}"


def client_ip(i: int) -> str:
    return [f"203.0.113.{i % 250 + 1}", f"198.51.100.{i % 250 + 1}", f"2001:db8:1:{i % 65000:x}::{i % 9 + 1}"][i % 3]


def send_beacons(url: str, ids: range, batch: int = 10, threads: int = 8, pause: float = 0.0) -> int:
    """POST beacons (path /p/<id>) in batches, each thread pausing ``pause`` s after
    each request; returns how many were answered 202."""

    def post(chunk: range) -> int:
        body = [{"site": SITE, "url": f"https://example.com/p/{i}", "props": {"n": i}} for i in chunk]
        headers = {"User-Agent": CHROME, "Content-Type": "text/plain", "X-Forwarded-For": client_ip(chunk[0])}
        r = http.post(f"{url}/collect", content=json.dumps(body), headers=headers)
        assert r.status_code == 202, r.text
        time.sleep(pause)
        return r.json()["accepted"]

    chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]
    # One client (creating one costs ~35 ms): its pool is shared by the threads.
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(post, chunks))
