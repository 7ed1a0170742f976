#!/usr/bin/env python
"""Throughput benchmark of ``beacon serve`` (embedded mode), driven by wrk.

    python bench/serve_bench.py                      # 60 s, one beacon per request
    python bench/serve_bench.py --batch 10           # 60 s, JSON arrays of 10 beacons
    python bench/serve_bench.py --quick              # 10 s smoke run
    python bench/serve_bench.py --profile            # also sample the server with py-spy
    python bench/serve_bench.py --bare               # the same load on the reference bare ASGI app (the ceiling)
    python bench/serve_bench.py --bare server        # ... on a no-op app under beacon's own HTTP server

It creates a temporary data directory and a small GeoIP City database, registers
example.com, starts ``beacon serve --trusted-proxy 127.0.0.1/32 --geoip DB`` on a
free port, runs wrk with bench/collect.lua (text/plain beacons, browser UAs,
varying X-Forwarded-For), stops the server with SIGTERM (which stores every
accepted beacon), counts the rows with ``beacon query`` and prints:

  accepted beacons/s, p50/p99/p99.9 request latency, stored/accepted, peak RSS, CPU.

"accepted" is counted twice: by wrk (202 responses × beacons per request) and by
the server (beacon_collector_beacons_accepted_total, read just before SIGTERM).
The server may have accepted up to connections × batch more than wrk saw (requests
in flight when wrk stops). The stored check is against the server's count, which
must match exactly; the exit status is non-zero when it does not.

This is a benchmark, not a test: figures depend on the machine, and wrk shares the
CPU with the server. Needs wrk (Debian: ``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA = BENCH_DIR / "collect.lua"
SITE = "example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def beacon_command() -> str:
    local = Path(sys.executable).with_name("beacon")
    if local.exists():
        return str(local)
    found = shutil.which("beacon")
    if not found:
        sys.exit("`beacon` not found: run with the project's venv (e.g. .venv/bin/python bench/serve_bench.py)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metrics(base: str) -> dict[str, float]:
    """Unlabelled series and a few labelled ones of /metrics, as {name: value}."""
    _, body = http_get(base + "/metrics", timeout=10)
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def server_pids(pid: int) -> list[int]:
    """The server and its child processes (``beacon serve --workers N``)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    children.append(int(entry))
            except (OSError, IndexError):
                continue
    return [pid, *children]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the server process and its children (all threads)."""
    total = 0
    for p in server_pids(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(process, thread name) → (user, system) CPU seconds, over the server's threads.
    Worker processes are summed together; the owner is ``pid``."""
    out: dict[tuple[str, str], tuple[float, float]] = collections.defaultdict(lambda: (0.0, 0.0))
    for p in server_pids(pid):
        role = "owner" if p == pid else "workers"
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/stat") as fh:
                    raw = fh.read()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            user, system = out[(role, name)]
            out[(role, name)] = (user + int(fields[11]) / CLK_TCK, system + int(fields[12]) / CLK_TCK)
    return out


def cpu_breakdown(before: dict, after: dict, seconds: float) -> list[tuple[str, float, float]]:
    """Cores used per (process, thread), user and system, busiest first."""
    rows = []
    for key, (user, system) in after.items():
        user0, system0 = before.get(key, (0.0, 0.0))
        rows.append((f"{key[0]}: {key[1]}", (user - user0) / seconds, (system - system0) / seconds))
    return sorted((r for r in rows if r[1] + r[2] >= 0.005), key=lambda r: -(r[1] + r[2]))


def system_busy_seconds() -> float:
    """CPU time spent by everything on the machine (all CPUs, not idle/iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"beacon serve exited with {server.returncode} before it was ready")
        try:
            if http_get(base + "/readyz", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("beacon serve not ready after 60 s")


class Sampler(threading.Thread):
    """Every few seconds: the server's accepted/stored counters, queue and CPU."""

    def __init__(self, base: str, pid: int, every: float):
        super().__init__(daemon=True)
        self.base, self.pid, self.every = base, pid, every
        self.rows: list[tuple[float, float, float, float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._halt.wait(self.every):
            try:
                m = metrics(self.base)
                self.rows.append(
                    (
                        time.monotonic() - start,
                        m.get("beacon_collector_beacons_accepted_total", 0),
                        m.get("beacon_sink_rows_total", 0),
                        proc_cpu_seconds(self.pid),
                        int(proc_status(self.pid)["VmRSS"].split()[0]) / 1024,
                    )
                )
            except Exception:  # a sample lost under load is not worth failing the run
                pass

    def stop(self) -> None:
        self._halt.set()
        self.join()


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Collapsed stacks from ``py-spy record -f raw --threads`` → share of samples per
    thread, and the top functions by self and by inclusive time."""
    self_c: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[re.sub(r"^thread \(\d+\): ", "", frames[0])] += n
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]] or ["?"]
        self_c[funcs[-1]] += n
        for f in set(funcs):
            incl[f] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples (non-idle; a thread waiting for the GIL counts as idle)", "by thread:"]
    lines += [f"  {c / total:6.1%}  {t}" for t, c in threads.most_common()]
    lines.append("self time:")
    lines += [f"  {c / total:6.1%}  {f}" for f, c in self_c.most_common(top)]
    lines.append("inclusive time (frames under the event loop / pipeline thread):")
    boring = (
        "click/",
        "<module>",
        "beacon/cli.py",
        "beacon/serve.py",
        "beacon/http.py",
        "uvloop/__init__.py",
        "asyncio/runners.py",
        "threading.py",
    )
    shown = [(f, c) for f, c in incl.most_common() if not any(b in f for b in boring)]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in shown[:top]]
    return "\n".join(lines)


# Both bare apps answer the server's lifespan messages first.
LIFESPAN = """
async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return
"""

# The ceiling a one-process Python collector is compared with, as the project's research
# notes define it (shared/research/stack-notes.md, "HTTP servers"): an ASGI app under
# uvicorn with httptools and uvloop that reads each body, parses it with orjson and
# answers with no body (202 here, as the collector does, so that collect.lua counts it
# the same way; the notes' app sent 204). Issue 27's "0.56× a bare ASGI app" is
# against this app.
BARE_REFERENCE = (
    LIFESPAN
    + """
import sys
import orjson
import uvicorn

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""
)

# A no-op app (reads nothing, parses nothing) under beacon's own HTTP server: the
# server's own ceiling, far above what any app that reads a beacon can do.
BARE_SERVER = (
    LIFESPAN
    + """
import sys
from web.server import listen, run

async def bare_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    await receive()
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"14")]})
    await send({"type": "http.response.body", "body": b'{"accepted":1}'})

run(bare_app, [listen("127.0.0.1", int(sys.argv[1]))])
"""
)

BARE_APPS = {"reference": BARE_REFERENCE, "server": BARE_SERVER}


def bare_run(wrk: str, args: argparse.Namespace, duration: int) -> int:
    """The same wrk load on a bare ASGI app: the ceiling the collector's requests/s are
    compared with (the intake is to stay at 0.5× or more of the reference app)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_APPS[args.bare], str(port)], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the bare server did not start") from None
                time.sleep(0.1)
        out = subprocess.run(
            [
                wrk,
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                str(LUA),
                f"http://127.0.0.1:{port}/collect",
                "--",
                f"batch={args.batch}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    w = parse_wrk(out)
    seconds = w["duration_us"] / 1e6
    print(f"bare ASGI app ({args.bare}), wrk -t{args.threads} -c{args.connections}, {seconds:.1f} s")
    print(f"  requests/s   {round((w['requests'] - w['non202']) / seconds):,}")
    print(f"  p50 / p99    {w['p50_us'] / 1000:.2f} / {w['p99_us'] / 1000:.2f} ms")
    return 0


def parse_wrk(out: str) -> dict:
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])
    raise RuntimeError("wrk printed no BENCH_JSON line:\n" + out)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    ap.add_argument("--quick", action="store_true", help="10 s smoke run (overrides --duration)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--batch", type=int, default=1, help="beacons per request; >1 sends a JSON array (default 1)")
    ap.add_argument("--no-origin", action="store_true", help="send no Origin header")
    ap.add_argument("--profile", action="store_true", help="sample the server with py-spy during the load")
    ap.add_argument("--profile-native", action="store_true", help="with --profile: include native frames")
    ap.add_argument("--keep", action="store_true", help="keep the data directory (printed)")
    ap.add_argument(
        "--bare",
        nargs="?",
        const="reference",
        choices=sorted(BARE_APPS),
        help="load a bare ASGI app instead of beacon serve: 'reference' (the default: uvicorn, reads and parses "
        "each body with orjson; the ceiling of issue 27's ratio) or 'server' (a no-op app on beacon's server)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between /metrics samples (default 5)")
    ap.add_argument("serve_args", nargs="*", help="extra `beacon serve` options, after --")
    args = ap.parse_args()
    duration = 10 if args.quick else args.duration

    wrk = shutil.which("wrk")
    if not wrk:
        print(
            "wrk is not installed. On Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    if args.bare:
        return bare_run(wrk, args, duration)
    py_spy = None
    if args.profile:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            print("py-spy is not installed: pip install py-spy", file=sys.stderr)
            return 2
    beacon = beacon_command()

    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    data_dir = work / "data"
    geoip = work / "city.mmdb"
    sys.path.insert(0, str(REPO))
    from tests.geoip import write_city_db  # the tests' small MaxMind-format City db

    write_city_db(geoip)
    subprocess.run([beacon, "sites", "add", "--data-dir", str(data_dir), SITE], check=True, stdout=subprocess.DEVNULL)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "serve.log"
    serve_cmd = [
        beacon,
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--geoip",
        str(geoip),
        "--trusted-proxy",
        "127.0.0.1/32",
        "--log-level",
        "warning",
        *args.serve_args,
    ]
    wrk_cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base + "/collect",
        "--",
        f"batch={args.batch}",
    ] + (["origin=0"] if args.no_origin else [])
    print("server:", " ".join(serve_cmd[1:]))
    print("load:  ", " ".join(wrk_cmd[1:]))

    with open(log_path, "wb") as log:
        server = subprocess.Popen(serve_cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(base, server)
        before = metrics(base)
        cpu0 = proc_cpu_seconds(server.pid)
        threads0 = thread_cpu_seconds(server.pid)
        sampler = Sampler(base, server.pid, args.sample_every)
        spy = None
        if py_spy:
            prof_raw = work / "profile.raw"
            spy_cmd = [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(max(1, duration - 2)),
                "--rate",
                "100",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(prof_raw),
            ]
            if args.profile_native:
                spy_cmd.append("--native")
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0 = system_busy_seconds()
        sampler.start()
        t0 = time.monotonic()
        wrk_run = subprocess.run(wrk_cmd, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy1 = system_busy_seconds()
        sampler.stop()
        if spy:
            spy.wait()
        cpu1 = proc_cpu_seconds(server.pid)
        threads = cpu_breakdown(threads0, thread_cpu_seconds(server.pid), elapsed)
        if wrk_run.returncode != 0:
            print(wrk_run.stdout, wrk_run.stderr, file=sys.stderr)
            raise RuntimeError(f"wrk exited with {wrk_run.returncode}")
        time.sleep(1.0)  # requests still in flight when wrk stopped are counted too
        after = metrics(base)
        peak_rss_mib = sum(int(proc_status(p)["VmHWM"].split()[0]) for p in server_pids(server.pid)) / 1024
        w = parse_wrk(wrk_run.stdout)

        server.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        server.wait(timeout=300)
        drain_s = time.monotonic() - t_term
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    q = subprocess.run(
        [
            beacon,
            "query",
            "--data-dir",
            str(data_dir),
            "SELECT count(), countIf(country_code != ''), uniqExact(ip_truncated), uniqExact(browser), "
            "countIf(utm_source != ''), countIf(device_id != '') FROM beacon.events",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stored, with_country, ips, browsers, with_utm, with_device = (int(x) for x in q.stdout.splitlines()[1].split("\t"))

    acc_key = "beacon_collector_beacons_accepted_total"
    server_accepted = int(after[acc_key] - before.get(acc_key, 0))
    sunk_during_load = int(after.get("beacon_sink_rows_total", 0) - before.get("beacon_sink_rows_total", 0))
    ok_requests = w["requests"] - w["non202"]
    client_accepted = ok_requests * args.batch
    seconds = w["duration_us"] / 1e6
    server_cpu = cpu1 - cpu0
    wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    other_cpu = max(0.0, (busy1 - busy0) - server_cpu - wrk_cpu)  # includes py-spy and this script
    figures = {
        "duration_s": round(seconds, 2),
        "connections": args.connections,
        "batch": args.batch,
        "requests_per_s": round(ok_requests / seconds),
        "beacons_per_s": round(client_accepted / seconds),
        "stored_per_s_during_load": round(sunk_during_load / seconds),
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "max_ms": w["lat_max_us"] / 1000,
        "non_202": w["non202"],
        "status_503": w["s503"],
        "socket_errors": sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        "accepted_client": client_accepted,
        "accepted_server": server_accepted,
        "stored": stored,
        "stored_equals_accepted": stored == server_accepted,
        "backlog_at_sigterm": server_accepted - sunk_during_load,
        "drain_after_sigterm_s": round(drain_s, 2),
        "server_exit": server.returncode,
        "server_peak_rss_mib": round(peak_rss_mib),
        "server_cpu_cores": round(server_cpu / elapsed, 2),
        "wrk_cpu_cores": round(wrk_cpu / elapsed, 2),
        "other_cpu_cores": round(other_cpu / elapsed, 2),
        "rows_with_country": with_country,
        "distinct_ip_truncated": ips,
        "distinct_browsers": browsers,
        "rows_with_utm_source": with_utm,
        "rows_with_device_id": with_device,
    }

    print()
    print(
        f"beacon serve, {args.batch} beacon(s)/request, wrk -t{args.threads} -c{args.connections}, {seconds:.1f} s, "
        f"{os.cpu_count()} CPUs shared by wrk and the server"
    )
    rows = [
        ("accepted beacons/s", f"{figures['beacons_per_s']:,}  ({figures['requests_per_s']:,} requests/s)"),
        (
            "stored beacons/s during load",
            f"{figures['stored_per_s_during_load']:,}  "
            f"(backlog at SIGTERM: {figures['backlog_at_sigterm']:,}, "
            f"drained in {figures['drain_after_sigterm_s']} s)",
        ),
        (
            "latency p50 / p90 / p99 / p99.9",
            f"{figures['p50_ms']:.2f} / {figures['p90_ms']:.2f} / "
            f"{figures['p99_ms']:.2f} / {figures['p999_ms']:.2f} ms  "
            f"(max {figures['max_ms']:.0f} ms)",
        ),
        (
            "non-202 responses",
            f"{figures['non_202']:,} (503: {figures['status_503']:,}); socket errors: {figures['socket_errors']:,}",
        ),
        ("accepted (wrk / server)", f"{client_accepted:,} / {server_accepted:,}"),
        ("stored", f"{stored:,}  ({'== accepted' if stored == server_accepted else 'MISMATCH: != accepted'})"),
        ("server peak RSS (VmHWM)", f"{figures['server_peak_rss_mib']} MiB"),
        (
            "CPU cores used: server / wrk / rest",
            f"{figures['server_cpu_cores']} / {figures['wrk_cpu_cores']} / "
            f"{figures['other_cpu_cores']}  (of {os.cpu_count()}; 'rest' is "
            f"everything else on the machine)",
        ),
        (
            "stored rows: with country / UTM / device_id",
            f"{with_country:,} / {with_utm:,} / {with_device:,}; {ips} distinct truncated IPs, {browsers} browsers",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print("\n  server CPU by thread (cores): user + system")
    for name, user, system in threads:
        print(f"    {name:<32} {user:5.2f} + {system:4.2f}")
    figures["cpu_by_thread"] = {name: [round(user, 3), round(system, 3)] for name, user, system in threads}
    if sampler.rows:
        print(f"\n  every ~{args.sample_every:g}s:  t(s)  accepted/s  stored/s  server CPU  RSS MiB")
        prev = (0.0, before.get(acc_key, 0), before.get("beacon_sink_rows_total", 0), cpu0, 0)
        for row in sampler.rows:
            dt = row[0] - prev[0]
            print(
                f"            {row[0]:5.0f}  {(row[1] - prev[1]) / dt:10,.0f}  {(row[2] - prev[2]) / dt:8,.0f}"
                f"  {(row[3] - prev[3]) / dt:10.2f}  {row[4]:7.0f}"
            )
            prev = row
    if args.profile and (work / "profile.raw").exists():
        print("\npy-spy profile of the server under load:")
        print(summarize_profile(work / "profile.raw"))
        figures["profile_raw"] = str(work / "profile.raw")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep or args.profile:
        print(f"\ndata directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if server.returncode != 0:
        print(f"beacon serve exited with {server.returncode}; log: {log_path}", file=sys.stderr)
    if stored != server_accepted:
        print(f"FAIL: stored {stored} != accepted {server_accepted}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
