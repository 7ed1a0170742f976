#!/usr/bin/env python
"""Backups of a running ``beacon serve``: time and size of a full backup, of an
incremental one, of a restore, and the ingestion rate during backups against the
rate without, in the same run.

    python bench/backup_bench.py                      # 10M events over 180 days
    python bench/backup_bench.py --events 1000000     # a quicker run
    python bench/backup_bench.py --data-dir D --reuse # a store loaded before (bench/stats_bench.py)

The store is loaded as bench/stats_bench.py loads it (synthetic traffic made inside
ClickHouse), then served by ``beacon serve``; every backup is ``beacon backup create``
through the server's control socket (flush, freeze, copy with SHA-256 of every file).
Ingestion: wrk (bench/collect.lua, 12 connections, one beacon a request) for
``--ingest-seconds``, alone, then while full backups of the store are made back to
back into fresh directories (the worst case: each copies everything), alternated
``--ingest-rounds`` times; the medians are compared. The incremental backup follows
that ingestion (its new rows are what it copies). The restore is ``beacon backup
restore`` into a new directory, the server stopped (checksums, copy, attach).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.serve_bench import beacon_command  # noqa: E402
from bench.stats_bench import load  # noqa: E402
from bench.stats_http import Server, wrk_rate  # noqa: E402
from bench.stats_traffic import SITES  # noqa: E402
from storage import backup  # noqa: E402
from storage.clickhouse import ClickHouseStore, dsn_for_data_dir  # noqa: E402
from storage.migrations import migrate  # noqa: E402

SITE = SITES[0][0]


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    data_dir = Path(args.data_dir) if args.data_dir else work / "data"
    print(machine())
    if not args.reuse:
        store = ClickHouseStore(dsn_for_data_dir(data_dir))
        migrate(store)
        load(store, args.events, args.days, datetime.now(timezone.utc).replace(second=0, microsecond=0))
        store.close()
    backups = work / "backups"
    try:
        with Server(data_dir, SITE) as server:
            full = timed_backup(data_dir, backups)
            print(
                f"full backup:        {full[0]:6.1f} s, {_mib(full[1].bytes_copied)} copied "
                f"({full[1].rows['events']:,} events; store {_mib(full[1].total_bytes())})"
            )
            ingestion(server, data_dir, work, args.ingest_seconds, args.ingest_rounds)
            incremental = timed_backup(data_dir, backups)
            print(
                f"incremental backup: {incremental[0]:6.1f} s, {_mib(incremental[1].bytes_copied)} copied "
                f"(+{incremental[1].rows['events'] - full[1].rows['events']:,} events since the full one; "
                f"{_mib(incremental[1].total_bytes())} in all, the rest hard-linked)"
            )
        restored = timed_restore(backups, incremental[1].backup_id, work / "restored")
        print(f"restore:            {restored:6.1f} s ({incremental[1].rows['events']:,} events, checksums included)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--ingest-seconds", type=int, default=20)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--data-dir", help="store directory (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="back up the store in --data-dir as it is")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    return parser.parse_args()


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    return (
        f"machine: {os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def timed_backup(data_dir: Path, backups: Path) -> tuple[float, backup.Manifest]:
    started = time.perf_counter()
    subprocess.run(
        [beacon_command(), "backup", "create", "--data-dir", str(data_dir), "--backup-dir", str(backups)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, backup.latest(backups)


def timed_restore(backups: Path, backup_id: str, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [beacon_command(), "backup", "restore", "--backup-dir", str(backups), "--data-dir", str(target), backup_id],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def ingestion(server: Server, data_dir: Path, work: Path, seconds: int, rounds: int) -> None:
    alone, during, made = [], [], []
    for _ in range(rounds):
        alone.append(wrk_rate(server, seconds))
        loop = _BackupLoop(data_dir, work)
        loop.start()
        during.append(wrk_rate(server, seconds))
        made.append(loop.stop())
    a, b = statistics.median(alone), statistics.median(during)
    print(
        f"ingestion (wrk -c12, {seconds} s runs, {rounds} rounds): {a:,.0f} beacons/s alone, {b:,.0f} during "
        f"back-to-back full backups ({statistics.median(made):.0f} made per run): {b / a:.2f}×"
    )


class _BackupLoop(threading.Thread):
    """Full backups, one after another, each into a new directory (removed after)."""

    def __init__(self, data_dir: Path, work: Path):
        super().__init__(daemon=True)
        self.data_dir, self.work, self.made = data_dir, work, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            target = self.work / f"loop-{self.made}"
            timed_backup(self.data_dir, target)
            shutil.rmtree(target)
            self.made += 1

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.made


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


if __name__ == "__main__":
    main()
