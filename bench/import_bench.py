#!/usr/bin/env python
"""``beacon import plausible`` of a large archive: the wall time of checking it whole
and writing it into a fresh embedded store, as the command does.

    python bench/import_bench.py                        # 2 years, ~10M visits a year
    python bench/import_bench.py --days 60              # a quicker run

The archive is generated directly as Plausible's export writes it (its ten files,
their headers and columns: storage/imported.FILES), with, per day, the rows a site of
that size has in each file (``ROWS_PER_DAY``: pages, sources, locations down to
cities, …) and counts adding up to ``--visits-per-year``. Printed: the archive's
size, rows, and the seconds for reading (unzip, header and every field checked) and
for importing (checked again while written, in batches of JSON rows).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.clickhouse import ClickHouseStore, dsn_for_data_dir  # noqa: E402
from storage.imported import FILES  # noqa: E402
from storage.migrations import migrate  # noqa: E402
from storage.plausible_archive import file_name, read_archive  # noqa: E402
from storage.plausible_import import Window, import_archive  # noqa: E402

# Rows per day of each file for a site of ~27,000 visits a day (a guess from the shape of
# such sites: a few hundred pages and sources, cities across a thousand or so places).
ROWS_PER_DAY = {
    "imported_visitors": 1,
    "imported_sources": 150,
    "imported_pages": 400,
    "imported_entry_pages": 200,
    "imported_exit_pages": 200,
    "imported_custom_events": 20,
    "imported_locations": 1500,
    "imported_devices": 4,
    "imported_browsers": 60,
    "imported_operating_systems": 40,
}


def _value(rng: random.Random, column: str, n: int) -> str:
    if column in ("page", "entry_page", "exit_page", "path"):
        return f"/section-{n % 40}/article-{n}"
    if column in ("referrer", "link_url"):
        return f"https://site-{n}.example/"
    if column == "city":
        return str(2_000_000 + n)
    if column == "hostname":
        return "example.com"
    return f"{column}-{n}"


def _csv(table: str, first: date, days: int, visits_per_day: int, rng: random.Random) -> bytes:
    file = FILES[table]
    per_day = ROWS_PER_DAY[table]
    lines = [",".join(file.names)]
    for d in range(days):
        day = (first + timedelta(days=d)).isoformat()
        for n in range(per_day):
            visits = max(1, int(visits_per_day / per_day * rng.uniform(0.2, 1.8)))
            fields = [day]
            for column in file.columns[1:]:
                if column.type == "String":
                    fields.append(_value(rng, column.name, n))
                else:
                    fields.append(str(_count(column.name, visits, rng)))
            lines.append(",".join(fields))
    return ("\n".join(lines) + "\n").encode()


def _count(column: str, visits: int, rng: random.Random) -> int:
    if column == "visit_duration":
        return visits * rng.randint(20, 200)
    if column in ("pageviews", "events"):
        return visits * rng.randint(1, 4)
    if column in ("visitors", "bounces"):
        return max(0, int(visits * rng.uniform(0.4, 0.9)))
    return visits


def make_archive(path: Path, first: date, days: int, visits_per_year: int) -> int:
    rng = random.Random(1)
    visits_per_day = visits_per_year // 365
    last = first + timedelta(days=days - 1)
    rows = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for table in FILES:
            data = _csv(table, first, days, visits_per_day, rng)
            rows += data.count(b"\n") - 1
            archive.writestr(file_name(table, first, last), data)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=729)
    parser.add_argument("--visits-per-year", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = date.today() - timedelta(days=args.days)
        archive = Path(tmp) / "plausible.zip"
        rows = make_archive(archive, first, args.days, args.visits_per_year)
        zipped = archive.stat().st_size
        store = ClickHouseStore(dsn_for_data_dir(Path(tmp) / "store"))
        migrate(store)
        started = time.perf_counter()
        checked = read_archive(archive, 8 << 30, 200)
        read = time.perf_counter() - started
        done = import_archive(store, "bench.example", checked, Window(first, None))
        total = time.perf_counter() - started
        stored = sum(store.rows(f"SELECT count() FROM beacon.{t}")[0][0] for t in FILES)
        store.close()
    assert stored == rows == sum(done.rows.values()), (stored, rows)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"archive: {args.days} days, {args.visits_per_year:,} visits a year, {rows:,} rows, "
        f"{zipped / 1e6:.0f} MB zipped"
    )
    print(
        f"read and checked: {read:.1f} s; imported (read, checked, written): {total:.1f} s; {rows / total:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
