#!/usr/bin/env python
"""A soak of ``beacon serve --workers 2``: a fixed offered rate for a long time,
watching what grows.

    python bench/soak.py                                   # 30 min at 7,500 beacons/s
    python bench/soak.py --duration 60 --rate 2000         # a quick check
    python bench/soak.py --out docs/soak                   # keep the CSV and the plot

The load is open loop at ``--rate`` (bench/kafka_bench.py's generator, in this
process: latency is measured from each request's scheduled send time, so a server
that falls behind shows it), run in ``--every``-second slices; after each slice
this script samples:

  rss_mib        resident memory of the owner and the HTTP processes, summed (and each)
  fds            open file descriptors, summed over the same processes
  fds_engine     of those, the chDB engine threads' handles to /proc/self/task/TID/
                 {stat,schedstat,io}: ClickHouse opens 3 for each of its threads and
                 keeps them for the thread's life, with no setting to turn it off;
                 idle pool threads are kept, so they grow with the peak concurrency
                 reached and then stay (docs/benchmarks.md, "Soak")
  threads        threads, summed over the same processes
  probe_*_ms     the latency of GET /healthz on a connection of its own, median and
                 max over the slice: the time a request waits for an HTTP process's
                 event loop (the server exports no loop-lag metric; this is that lag
                 seen from outside, plus one request). A subprocess probes once a
                 ``--probe-every`` s *during* the load (a probe between slices would
                 find the server idle), each time on a new connection so that
                 SO_REUSEPORT spreads the probes over both HTTP processes
  p50/p99_ms     the slice's request latency
  accepted       the server's beacon_collector_beacons_accepted_total
  stored         its beacon_sink_rows_total

At the end: the server drains until stored == accepted (to a deadline; both
readings must hold for longer than common.metrics.FLUSH_SECONDS, since an HTTP
process's counts reach /metrics up to that late), stops on SIGTERM, and
``beacon query`` counts the rows. Verdicts: RSS growth after
``--warmup`` ≤ 10 %, descriptors other than the engine's per-thread handles flat
(the medians of the first and last thirds after warm-up ≤ 16 apart: single
samples catch short peaks), threads flat (≤ 8 apart after warm-up: the engine's
handles are at most 3 a thread), stored == accepted, every answer a 202. The
samples go to ``soak.csv`` and, with matplotlib installed, ``soak.png`` in
``--out``; the raw probes go to ``probe.log``.

Between slices the load pauses for the sampling and the generator's start (a few
hundred ms: the offered rate over the whole run is printed, ~97 % of ``--rate``).

A benchmark, not a test: the load generator shares the machine's cores with the
server (the default rate is half the ~15,000 beacons/s measured with wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.kafka_bench import _loadgen  # noqa: E402
from bench.serve_bench import beacon_command, free_port, metrics, proc_status, server_pids, wait_ready  # noqa: E402
from common.metrics import FLUSH_SECONDS  # noqa: E402

SITE = "example.com"
ACCEPTED = "beacon_collector_beacons_accepted_total"
STORED = "beacon_sink_rows_total"


@dataclass
class Sample:
    t_s: float
    rss_mib: float
    rss_each_mib: str
    fds: int
    fds_engine: int
    threads: int
    probe_p50_ms: float
    probe_max_ms: float
    probe_errors: int
    p50_ms: float
    p99_ms: float
    offered: int
    answered_202: int
    other: int
    accepted: int
    stored: int


def main() -> int:
    args = parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="beacon-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="beacon-soak-data-"))
    beacon = beacon_command()
    subprocess.run([beacon, "sites", "add", "--data-dir", str(data_dir), SITE], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        beacon,
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--workers",
        "2",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--log-level",
        "warning",
    ]
    print("server:", " ".join(command[1:]))
    print(
        f"load:   {args.rate:,} beacons/s offered, {args.batch} a request, {args.connections} connections, "
        f"{args.duration} s in {args.every} s slices; {os.cpu_count()} CPUs shared with the server"
    )
    with open(out / "serve.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    probe = None
    try:
        wait_ready(base, server)
        with open(out / "probe.log", "wb") as probe_log:
            probe = subprocess.Popen(
                [sys.executable, __file__, "_probe", base, str(args.probe_every)], stdout=probe_log
            )
        samples = run(args, base, server.pid, ProbeReader(out / "probe.log"))
        probe.terminate()
        drained = drain(base, args.drain_timeout)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    finally:
        for proc in (p for p in (probe, server) if p is not None and p.poll() is None):
            proc.kill()
            proc.wait()
    counted = int(
        subprocess.run(
            [beacon, "query", "--data-dir", str(data_dir), "SELECT count() FROM beacon.events"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    if args.keep:
        print(f"data directory kept: {data_dir}")
    else:  # 30 minutes at 7,500/s leave ~13M rows behind
        shutil.rmtree(data_dir, ignore_errors=True)
    write_csv(out / "soak.csv", samples)
    plotted = plot(out / "soak.png", samples)
    return report(args, samples, drained, counted, out, plotted)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=1800, help="seconds of load (default 1800)")
    ap.add_argument("--rate", type=int, default=7500, help="offered beacons/s (default 7,500)")
    ap.add_argument("--batch", type=int, default=1, help="beacons per request (default 1)")
    ap.add_argument("--connections", type=int, default=32, help="load connections (default 32)")
    ap.add_argument("--every", type=int, default=10, help="seconds per slice and sample (default 10)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="seconds left out of the growth verdicts (default 300: the engine fills its thread pools "
        "in the first minutes, with the first merges and visit-builder rounds)",
    )
    ap.add_argument("--probe-every", type=float, default=1.0, help="seconds between /healthz probes (default 1)")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--keep", action="store_true", help="keep the server's data directory (printed)")
    ap.add_argument("--out", help="directory for soak.csv, soak.png and serve.log (default: a temporary one)")
    return ap.parse_args()


def run(args: argparse.Namespace, base: str, pid: int, probes: ProbeReader) -> list[Sample]:
    samples: list[Sample] = []
    started = time.monotonic()
    while time.monotonic() - started < args.duration:
        load = asyncio.run(_loadgen(base + "/collect", args.rate, args.batch, args.every, args.connections))
        seen = metrics(base)
        pids = server_pids(pid)
        rss = [int(proc_status(p)["VmRSS"].split()[0]) / 1024 for p in pids]
        descriptors = [_descriptors(p) for p in pids]
        lags, lag_errors = probes.new()
        sample = Sample(
            t_s=round(time.monotonic() - started, 1),
            rss_mib=round(sum(rss), 1),
            rss_each_mib="/".join(f"{r:.0f}" for r in rss),
            fds=sum(every for every, _ in descriptors),
            fds_engine=sum(engine for _, engine in descriptors),
            threads=sum(_threads(p) for p in pids),
            probe_p50_ms=round(statistics.median(lags), 2) if lags else float("nan"),
            probe_max_ms=round(max(lags), 2) if lags else float("nan"),
            probe_errors=lag_errors,
            p50_ms=round(load["p50_ms"], 2),
            p99_ms=round(load["p99_ms"], 2),
            offered=load["sent_beacons"],
            answered_202=load["ok"] * args.batch,
            other=load["non202"] + load["errors"],
            accepted=int(seen.get(ACCEPTED, 0)),
            stored=int(seen.get(STORED, 0)),
        )
        samples.append(sample)
        print(
            f"{sample.t_s:7.0f} s  rss {sample.rss_mib:7.1f} MiB ({sample.rss_each_mib})  "
            f"fds {sample.fds:4} ({sample.fds_engine} engine, {sample.threads} threads)  "
            f"probe {sample.probe_p50_ms:5.2f}/{sample.probe_max_ms:6.2f} ms  p50 {sample.p50_ms:6.2f}  p99 {sample.p99_ms:7.2f} ms  "
            f"202 {sample.answered_202:,}/{sample.offered:,}  stored {sample.stored:,}",
            flush=True,
        )
    return samples


def drain(base: str, timeout: float) -> dict[str, float]:
    """Wait until the server has stored what it accepted (or the deadline).

    The HTTP processes add their counts to /metrics up to FLUSH_SECONDS late, so a
    first stored == accepted can compare with a stale accepted: it must read the same
    twice, further apart than that."""
    deadline = time.monotonic() + timeout
    last: tuple[float, float] | None = None
    while True:
        seen = metrics(base)
        now = (seen.get(ACCEPTED, 0), seen.get(STORED, 0))
        if (now[0] == now[1] and now == last) or time.monotonic() > deadline:
            return {"accepted": now[0], "stored": now[1]}
        last = now
        time.sleep(FLUSH_SECONDS + 0.5)


def _descriptors(pid: int) -> tuple[int, int]:
    """Open descriptors: all, and those on a thread's own /proc entries (chDB's
    per-thread stats)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0, 0
    engine = 0
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        engine += target.startswith("/proc/") and "/task/" in target
    return len(names), engine


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class ProbeReader:
    """The probe subprocess's lines (``<unix time> <ms>|error``) not read yet."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new(self) -> tuple[list[float], int]:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        values = [line.split()[1] for line in complete.decode().splitlines()]
        return [float(v) for v in values if v != "error"], values.count("error")


def probe_main(base: str, every: float) -> int:
    """``soak.py _probe BASE EVERY``: a /healthz probe per EVERY s until terminated."""
    while True:
        started = time.monotonic()
        try:
            value = f"{_probe_ms(base):.3f}"
        except OSError:
            value = "error"
        print(f"{time.time():.3f} {value}", flush=True)
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def _probe_ms(base: str) -> float:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.perf_counter()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
        return (time.perf_counter() - started) * 1000


def write_csv(path: Path, samples: list[Sample]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, [f.name for f in fields(Sample)])
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)


def plot(path: Path, samples: list[Sample]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    minutes = [s.t_s / 60 for s in samples]
    panels = [
        ("RSS, owner + 2 HTTP processes (MiB)", [s.rss_mib for s in samples]),
        (
            "open file descriptors: all, and without the engine's per-thread /proc handles",
            [s.fds for s in samples],
            [s.fds - s.fds_engine for s in samples],
        ),
        ("p99 request latency per 10 s (ms)", [s.p99_ms for s in samples]),
        ("GET /healthz on its own connection, max per 10 s (ms)", [s.probe_max_ms for s in samples]),
    ]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 9), sharex=True)
    for axis, (title, *series) in zip(axes, panels):
        for values in series:
            axis.plot(minutes, values, linewidth=1)
        axis.set_title(title, fontsize=10)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    figure.suptitle("beacon serve --workers 2, soak", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def report(
    args: argparse.Namespace, samples: list[Sample], drained: dict, counted: int, out: Path, plotted: bool
) -> int:
    steady = [s for s in samples if s.t_s > args.warmup]
    if len(steady) < 2:
        print(f"\nthe run is not longer than the warm-up ({args.warmup} s): the growth verdicts use every sample")
        steady = samples
    rss_growth = (steady[-1].rss_mib - steady[0].rss_mib) / steady[0].rss_mib * 100
    # A slice can catch a short peak (an insert or a merge holds part files open for a
    # moment). Growth is the typical count moving: the thirds' medians are compared.
    other_fds = [s.fds - s.fds_engine for s in steady]
    third = max(1, len(other_fds) // 3)
    first_other, last_other = statistics.median(other_fds[:third]), statistics.median(other_fds[-third:])
    threads = [s.threads for s in steady]
    answered = sum(s.answered_202 for s in samples)
    offered = sum(s.offered for s in samples)
    others = sum(s.other for s in samples) + sum(s.probe_errors for s in samples)
    probes = [s for s in samples if s.probe_max_ms == s.probe_max_ms]  # not NaN: the slice had a probe
    seconds = samples[-1].t_s
    checks = {
        f"RSS growth after warm-up {rss_growth:+.1f} % ({steady[0].rss_mib:.0f} → {steady[-1].rss_mib:.0f} MiB) ≤ 10 %": rss_growth
        <= 10,
        f"descriptors other than the engine's per-thread /proc handles flat: median {first_other:.0f} over the "
        f"first third after warm-up, {last_other:.0f} over the last (≤ 16 apart; single samples peaked at "
        f"{max(other_fds)})": abs(last_other - first_other) <= 16,
        f"threads flat: {min(threads)}–{max(threads)} (spread ≤ 8), which bounds the engine's per-thread /proc "
        f"handles (3 a thread that has run engine work; {steady[0].fds_engine} → {steady[-1].fds_engine})": max(threads)
        - min(threads)
        <= 8,
        f"stored == accepted: {counted:,} rows, server accepted {int(drained['accepted']):,} "
        f"(202s seen by the load: {answered:,})": counted == int(drained["accepted"]),
        f"every answer a 202: {others:,} other answers or errors (load and probe)": others == 0,
    }
    print(
        f"\n{seconds / 60:.1f} min, offered {offered:,} beacons ({offered / seconds:,.0f}/s), "
        f"202 for {answered:,}; p99 per slice: median {statistics.median(s.p99_ms for s in samples):.2f} ms, "
        f"max {max(s.p99_ms for s in samples):.2f} ms; /healthz probe during the load: median of slice medians "
        f"{statistics.median(s.probe_p50_ms for s in probes or samples):.2f} ms, "
        f"max {max(s.probe_max_ms for s in probes or samples):.2f} ms"
    )
    for text, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"samples: {out / 'soak.csv'}" + (f", plot: {out / 'soak.png'}" if plotted else ""))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_probe":
        sys.exit(probe_main(sys.argv[2], float(sys.argv[3])))
    sys.exit(main())
