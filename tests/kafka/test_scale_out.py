"""Scale-out on one broker: 3 collectors and 3 workers share 6 partitions, 100,000
beacons go in through the three collectors at once, and the store holds each once.
The per-process rates it prints (`pytest -s`) are the measured basis of
docs/scaling.md; on 2 cores they show the work spread, not a speed-up."""

from __future__ import annotations

import os
import re
import threading
import time

import httpx
import pytest

from tests.faults import wait_for
from tests.kafka.pipeline import Deployment, Process, send_beacons

if os.environ.get("BEACON_SKIP_KAFKA") == "1":
    pytest.skip("BEACON_SKIP_KAFKA=1: Kafka tests disabled", allow_module_level=True)

N = 100_000
PARTITIONS = 6


def _metric(url: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)", httpx.get(url, timeout=10).text, re.M)
    return float(found.group(1)) if found else 0.0


def _owned(worker: Process, raw_topic: str) -> set[str]:
    text = httpx.get(worker.metrics_url, timeout=10).text
    return {
        p
        for p, t in re.findall(r'^beacon_consumer_lag\{partition="(\d+)",topic="([^"]+)"\}', text, re.M)
        if t == raw_topic
    }


def _cpu_seconds(process: Process) -> float:
    with open(f"/proc/{process.proc.pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_three_collectors_and_three_workers_store_100000_beacons_once(tmp_path):
    d = Deployment(tmp_path, partitions=PARTITIONS)
    try:
        d.store().start()
        workers = [d.worker(f"worker-{k}").start() for k in range(3)]
        collectors = [d.collector().start() for _ in range(3)]
        wait_for(
            lambda: (
                all(_owned(w, d.topics["raw"]) for w in workers)
                and len(set.union(*(_owned(w, d.topics["raw"]) for w in workers))) == PARTITIONS
            ),
            60,
            "the three workers sharing the six raw partitions",
            every=0.5,
        )
        cpu_before = [_cpu_seconds(p) for p in workers + collectors]

        share = N // len(collectors)
        accepted: list[int] = [0] * len(collectors)

        def load(k: int) -> None:
            ids = range(k * share, N if k == len(collectors) - 1 else (k + 1) * share)
            accepted[k] = send_beacons(collectors[k].url, ids, batch=10, threads=4)

        started = time.monotonic()
        senders = [threading.Thread(target=load, args=(k,)) for k in range(len(collectors))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        sent_in = time.monotonic() - started
        assert sum(accepted) == N
        assert d.wait_stored(N, timeout=240) == {"n": N, "u": N}
        stored_in = time.monotonic() - started

        filtered = [_metric(w.metrics_url, "beacon_worker_events_filtered_total") for w in workers]
        taken = [_metric(c.url + "/metrics", "beacon_collector_beacons_accepted_total") for c in collectors]
        assert taken == accepted and all(n > 0 for n in accepted)
        assert sum(filtered) == N and all(n > 0 for n in filtered), filtered
        cpu = [_cpu_seconds(p) - before for p, before in zip(workers + collectors, cpu_before)]
        print(
            f"\n{N:,} beacons through 3 collectors and 3 workers ({PARTITIONS} partitions): accepted in "
            f"{sent_in:.1f} s ({N / sent_in:,.0f}/s), all stored after {stored_in:.1f} s ({N / stored_in:,.0f}/s)"
        )
        for k in range(len(collectors)):
            seconds = cpu[len(workers) + k]
            print(
                f"  collector {k}: {accepted[k]:,} beacons, {seconds:.1f} CPU s ({accepted[k] / seconds:,.0f} per CPU s)"
            )
        for k, w in enumerate(workers):
            print(
                f"  worker {k}: partitions {sorted(_owned(w, d.topics['raw']))}, {filtered[k]:,.0f} beacons, "
                f"{cpu[k]:.1f} CPU s ({filtered[k] / cpu[k]:,.0f} per CPU s)"
            )
    finally:
        d.close()
