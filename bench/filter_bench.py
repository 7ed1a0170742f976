#!/usr/bin/env python
"""In-process micro-benchmark of the worker's per-beacon path, and an equivalence check.

    python bench/filter_bench.py                         # time decode / filter / encode
    python bench/filter_bench.py --profile               # + cProfile of the filter stage
    python bench/filter_bench.py --record ref.jsonl      # write the filter's output on the corpus
    python bench/filter_bench.py --check ref.jsonl       # compare with a recorded output (exit 1 on any difference)

**Timing.** Raw Kafka records of ``--record-events`` beacons each are built from the
Kafka benchmark's request mix (``bench/kafka_bench.py:make_raw_events``: browser
UAs, documentation-range IPv4/IPv6, utm parameters, props, consented device IDs)
with ``streams.records.encode_raw_batch``. Each repetition then times, in CPU time
(``time.process_time``), the three stages of ``streams.worker.filter_record``, record
by record: ``decode_raw_batch``, ``filter_batch`` (real GeoIP lookups on the tests'
City db, visitor hashes with ``DailySalts``, a key for pseudonyms, one objection)
and ``encode_rows``. It prints µs per beacon per stage, best and median over the
repetitions, and the minor page faults of each stage. This 2-core KVM guest's speed
varies up to 3× between runs: compare variants within one sitting, interleaved,
never with figures from another day.

**Equivalence.** ``--record``/``--check`` run a deterministic corpus (``--corpus``
events: the request mix plus adversarial paths, query strings, props, names,
referrers, IPs, user agents, consent/DNT/GPC and salt-day variants) through both
paths the product has: ``filter_batch`` on the collector's ``RawEvent`` objects
(embedded mode) and decode → filter → encode of raw records (worker), under two
filter configurations. The output compared is the JSONEachRow bytes, the dropped
events and the action counts. Record before a change, check after it.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for p in (str(BENCH_DIR), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

from kafka_bench import USER_AGENTS, beacon_dict, client_ip, make_raw_events  # noqa: E402

from schemas.events import Beacon, RawEvent, RequestContext  # noqa: E402
from storage.sink import encode_rows  # noqa: E402
from streams.geo import GeoLookup  # noqa: E402
from streams.privacy_filter import FilterConfig, FilterEnv, filter_batch  # noqa: E402
from streams.records import RawBatch, decode_raw_batch, encode_raw_batch  # noqa: E402
from streams.steps import pseudonymise  # noqa: E402
from streams.visitor import DailySalts  # noqa: E402
from tests.geoip import write_city_db  # noqa: E402

SITE = "example.com"


# --- timing -------------------------------------------------------------------------


def raw_records(n: int, per_record: int) -> list[bytes]:
    events = list(make_raw_events(n))
    return [encode_raw_batch(RawBatch(f"batch-{i}", events[i : i + per_record])) for i in range(0, n, per_record)]


STAGES = ("decode", "filter", "encode")


def time_stages(records: list[bytes], env: FilterEnv) -> tuple[dict[str, float], dict[str, int]]:
    """CPU seconds and minor page faults of each stage, summed over the records. Each
    record goes through the three stages before the next one is read, as in the
    worker, so that the allocator and the garbage collector see about what they see
    there. (Page faults are CPU time too: a stage that makes glibc hand memory back
    to the kernel and fault it in again pays for it.)"""
    seconds, faults = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0)
    for record in records:
        t0, f0 = time.process_time(), _minor_faults()
        batch = decode_raw_batch(record)
        t1, f1 = time.process_time(), _minor_faults()
        kept, _dropped, _actions = filter_batch(batch.events, env)
        for event in kept:
            event.batch_id = batch.batch_id
        t2, f2 = time.process_time(), _minor_faults()
        encode_rows(kept)
        t3, f3 = time.process_time(), _minor_faults()
        for stage, dt, df in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2), (f1 - f0, f2 - f1, f3 - f2)):
            seconds[stage] += dt
            faults[stage] += df
    return seconds, faults


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench(args, env: FilterEnv) -> None:
    records = raw_records(args.beacons, args.record_events)
    n = args.beacons
    time_stages(records[:20], env)  # warm the caches and the UA/bot matchers
    runs, faults = zip(*(time_stages(records, env) for _ in range(args.repeat)))
    print(f"{n} beacons in records of {args.record_events}, {args.repeat} repetitions, CPU µs per beacon:")
    print(f"  {'stage':<8} {'best':>7} {'median':>7}   page faults per beacon (median)")
    for stage in STAGES:
        values = [r[stage] * 1e6 / n for r in runs]
        stage_faults = statistics.median(f[stage] / n for f in faults)
        print(f"  {stage:<8} {min(values):7.2f} {statistics.median(values):7.2f}   {stage_faults:.2f}")
    totals = [sum(r.values()) * 1e6 / n for r in runs]
    best, median = min(totals), statistics.median(totals)
    print(f"  {'total':<8} {best:7.2f} {median:7.2f}   → {1e6 / best:,.0f} beacons/s best, {1e6 / median:,.0f} median")
    if args.profile:
        profile(records, env)


def profile(records: list[bytes], env: FilterEnv) -> None:
    batches = [decode_raw_batch(r) for r in records]
    prof = cProfile.Profile()
    prof.enable()
    for b in batches:
        filter_batch(b.events, env)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
    print(text.getvalue())


# --- the equivalence corpus -----------------------------------------------------------

PATHS = [
    "/users/jane.doe+news@example.co.uk/orders",
    "/u/jane%40example.com",
    "/dev/AA:BB:CC:DD:EE:FF/x",
    "/mac/aa-bb-cc-dd-ee-ff",
    "/ads/6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
    "/ip/203.0.113.77/x",
    "/v6/2001:db8:1:2::5",
    "/v6/2001:0db8:0000:0000:0000:ff00:0042:8329",
    "/blog/2024-01-05-my-post",
    "/release/v1.2.3",
    "/p/1.2.3.4.5",
    "/at/12:30:45",
    "/caf%C3%A9/%E2%82%AC",
    "/ünï/€",
    "/a%2Fb",
    "/x;y=1",
    "/a b",
    "//double//slash",
    "/%ZZ/%4",
    "/100.5%25",
    "/a@b",
    "/deadbeef-cafe",
    "/ab-cd-ef-01-23",
    "/fe80::1",
    "/::",
    "/1.2.3.4",
    "/999.1.1.1",
    "",
    "/docs/getting-started",
    "/shop/item-42",
    "/m/%41%40b.co",
    "/x/AB-CD-EF-01-23-45-67",
    "/u/a.b@c.d.ef",
    "/e/é@example.com",
    "/id/12345678-1234-1234-1234-1234567890abc",
]
QUERIES = [
    "",
    "?utm_source=jane%40mail.com&token=secret",
    "?utm_source=News+Letter&utm_medium=e%2Dmail",
    "?utm_campaign=caf%C3%A9&utm_term=%E2%82%AC",
    "?utm%5Fsource=encoded&utm_content=a=b",
    "?utm_source",
    "?utm_source=&utm_medium=x",
    "?utm_source=a&utm_source=b",
    "?q=shoes&page=2&sort=asc",
    "?q=a+b%26c",
    "?utm_term=203.0.113.9&utm_content=6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "?&&utm_medium=cpc&",
    "?utm_source=x;y",
    "?page=%ZZ&utm_source=%ZZ",
    "?utm_source=GOOGLE&gclid=abc",
    "?q=bob@example.org",
    "?utm_medium=~._-&q=%20",
    "?utm_source=a%2Bb",
]
HOSTS = [
    "example.com",
    "Example.COM",
    "www.example.com",
    "example.com:443",
    "example.com:8080",
    "user:pw@example.com",
    "[2001:db8::1]:8443",
    "example.com:abc",
    "xn--bcher-kva.example",
    "example.com.",
    "EXAMPLE.com:80",
]
REFERRERS = [
    "",
    "https://www.google.com/",
    "https://mail.example.net/read/6ba7b810-9dad-11d1-80b4-00c04fd430c8?x=1",
    "android-app://com.slack/",
    "ftp://files.example/x",
    "https:///nohost",
    "https://EXAMPLE.com/p?q=1",
    "not a url",
    "https://user@host.example/p/jane@example.com",
    "//host.example/path",
    "https://www.example.com/blog/",
    "http://t.co/abc#frag",
    "https://[2001:db8::1]/v6",
    "https://x.example:99999/",
]
NAMES = ["", "signup", "signup jane@example.com", "click 10.0.0.1", "mac aa:bb:cc:dd:ee:ff", "v1.2"]
PROPS = [
    {},
    {"plan": "pro", "seats": 3, "trial": True},
    {"email": "bob@example.org", "ip": "198.51.100.23", "n": 3},
    {"jane@example.com": "k", "ratio": 0.5, "neg": False, "big": 1e20, "f": 1.0, "int": 10**18},
    {"id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "mac": "AA-BB-CC-DD-EE-FF", "v6": "2001:db8::1"},
    {"path": "/u/jane%40example.com", "t": "12:30", "x": ""},
]
IPS = [
    "203.0.113.77",
    "203.0.113.200",
    "198.51.100.7",
    "::ffff:198.51.100.7",
    "2001:db8:1:77::5",
    "2001:DB8:2::A",
    "fe80::1%eth0",
    " 203.0.113.9 ",
    "::1",
    "unknown",
    "",
    "999.1.1.1",
    "192.0.2.1",
    "8.8.8.8",
    "01.2.3.4",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.4.0",
    "",
    "  ",
    "python-requests/2.31.0",
    "Mozilla/5.0",
    "garbage ua ☃",
]
LANGS = ["", "fr-ca", "zh-hant-tw", "EN", "*", "1x", "x" * 40, "en_US", "de"]
ACCEPT = ["", "en-US,en;q=0.9", "*", "fr-CA;q=0.9", "de_de", "ja"]
MACS = ["AA-BB-CC-DD-EE-FF", "aabbccddeeff", "aa:bb:cc:dd:ee:ff", "AABB.CCDD.EEFF"]
DAY = 86400.0
T0 = 1_772_000_000.0  # a fixed time: the corpus must not depend on the clock
OPTED_OUT_DEVICE = "dev-opted-out"


class FixedSalts:
    """Deterministic salts; day T0+3 has none (its salt was destroyed)."""

    def __init__(self, missing_day: int):
        self.missing_day = missing_day

    def salt(self, day: int) -> bytes | None:
        return None if day == self.missing_day else hashlib.sha256(f"salt-{day}".encode()).digest()[:16]


def corpus_events(n: int, seed: int = 11) -> list[RawEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        data = beacon_dict(rng, SITE, rng.choice(["example.com", "www.example.com"]))
        data["ts"] = int(T0 * 1000) - rng.randint(0, 5000) if rng.random() < 0.9 else None
        if rng.random() < 0.5:
            data["url"] = (
                f"{rng.choice(['https', 'http'])}://{rng.choice(HOSTS)}{rng.choice(PATHS)}{rng.choice(QUERIES)}"
            )
            if rng.random() < 0.1:
                data["url"] += "#frag@x.com"
        if rng.random() < 0.3:
            data["referrer"] = rng.choice(REFERRERS)
        if rng.random() < 0.2:
            data |= {"type": "event", "name": rng.choice(NAMES), "props": rng.choice(PROPS)}
        if rng.random() < 0.2:
            data["lang"] = rng.choice(LANGS)
        if rng.random() < 0.15:
            flags = [rng.random() < 0.5 for _ in range(3)]
            data["consent"] = {"analytics": flags[0], "device_id": flags[1], "mac": flags[2]}
            data["device_id"] = OPTED_OUT_DEVICE if rng.random() < 0.1 else f"dev-{rng.randint(1, 50)}"
            if rng.random() < 0.5:
                data["mac"] = rng.choice(MACS)
        beacon = Beacon.from_valid(data)
        ua = rng.choice(BOTS) if rng.random() < 0.1 else rng.choice(USER_AGENTS)
        ip = rng.choice(IPS) if rng.random() < 0.3 else client_ip(rng).split(",")[-1].strip()
        context = RequestContext(
            received_at=T0 + rng.randint(0, 4) * DAY + rng.random() * 1000,
            ip=ip,
            user_agent=ua,
            accept_language=rng.choice(ACCEPT),
            dnt=rng.random() < 0.05,
            gpc=rng.random() < 0.05,
        )
        events.append(RawEvent(f"{seed}-{i:08d}", beacon, context))
    return events


def corpus_envs(geo: GeoLookup) -> list[FilterEnv]:
    from streams.visitor import utc_day

    key = b"bench-id-key"
    return [
        FilterEnv(geo, FilterConfig(id_key=key)),
        FilterEnv(
            geo,
            FilterConfig(ipv4_prefix=16, ipv6_prefix=56, keep_query_params=frozenset({"q", "page"}), id_key=key),
            opted_out=frozenset({pseudonymise(OPTED_OUT_DEVICE, key), pseudonymise("aa:bb:cc:dd:ee:ff", key)}),
            salts=FixedSalts(utc_day(T0 + 3 * DAY)),
        ),
    ]


def corpus_output(events: list[RawEvent], env: FilterEnv, per_record: int) -> list[str]:
    """One line per record and path: the encoded rows, the dropped events, the actions."""
    lines = []
    for i in range(0, len(events), per_record):
        chunk, batch_id = events[i : i + per_record], f"batch-{i}"
        record = encode_raw_batch(RawBatch(batch_id, chunk))  # before filtering: it must not touch its input
        embedded = filter_batch(chunk, env)
        batch = decode_raw_batch(record)
        worker = filter_batch(batch.events, env)
        for event in worker[0]:
            event.batch_id = batch.batch_id
        for path, (kept, dropped, actions) in (("embedded", embedded), ("worker", worker)):
            lines.append(
                json.dumps(
                    {
                        "path": path,
                        "record": i // per_record,
                        "rows": encode_rows(kept).decode(),
                        "dropped": [[d.event_id, d.reason] for d in dropped],
                        "actions": dict(sorted(actions.items())),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                )
            )
    return lines


def run_corpus(args, geo: GeoLookup) -> int:
    events = corpus_events(args.corpus)
    lines = [line for env in corpus_envs(geo) for line in corpus_output(events, env, args.record_events)]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    print(f"corpus: {len(events)} events, {len(lines)} outputs, sha256 {digest}")
    if args.record:
        Path(args.record).write_text("\n".join(lines) + "\n")
        print(f"recorded in {args.record}")
    if args.check:
        expected = Path(args.check).read_text().splitlines()
        if expected == lines:
            print(f"identical to {args.check}")
            return 0
        for n, (want, got) in enumerate(zip(expected, lines)):
            if want != got:
                print(f"DIFFERENT at output {n}:\n  expected {want[:2000]}\n  got      {got[:2000]}")
                break
        else:
            print(f"DIFFERENT: {len(expected)} outputs expected, {len(lines)} produced")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beacons", type=int, default=20_000)
    parser.add_argument("--record-events", type=int, default=100, help="beacons per raw record")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile the filter stage once")
    parser.add_argument("--corpus", type=int, default=30_000, help="events of the equivalence corpus")
    parser.add_argument("--record", metavar="FILE", help="write the corpus output (no timing)")
    parser.add_argument("--check", metavar="FILE", help="compare the corpus output with FILE (no timing)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="filter-bench-") as tmp:
        geo = GeoLookup(write_city_db(Path(tmp) / "city.mmdb"))
        if args.record or args.check:
            return run_corpus(args, geo)
        key = b"bench-id-key"
        # As in production once anyone has objected: the objection check runs.
        env = FilterEnv(
            geo,
            FilterConfig(id_key=key),
            opted_out=frozenset({pseudonymise("dev-who-objected", key)}),
            salts=DailySalts(Path(tmp) / "salts"),
        )
        bench(args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
