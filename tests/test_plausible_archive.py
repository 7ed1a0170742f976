"""Plausible CSV archives built by hand from Plausible's documented format, imported
and read back; malformed and unsafe archives refused whole; the two commands.

The format, as Plausible writes and reads it:
* lib/plausible/exports.ex (plausible/analytics): the export's SELECTs give each
  file's columns and their order; files are named
  ``imported_<table>_YYYYMMDD_YYYYMMDD.csv`` (``export_queries``), CSVWithNames;
* lib/plausible/imported/csv_importer.ex: the importer's file names and typed
  structures (``date Date``, text ``String``, counts ``UInt64``);
* docs: https://plausible.io/docs/csv-import (the files, optional; visit_duration is
  a total in seconds; bounces and visits per row);
* goals from imports, as Plausible reads them (lib/plausible/stats/imported/imported.ex,
  ``merge_imported`` for an event:goal dimension; imported/base.ex, ``decide_tables``):
  an event goal's conversions are the custom events of its name (visitors, events), a
  page goal's the imported pages its path matches (visitors, pageviews as events);
  conversion_rate divides by the visitors of imported_visitors and the site's own.
Expected figures are computed here from the rows written, in plain Python."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

import queries
from queries.days import start_of
from queries.model import Behaviour, Either, Filter, StatsQuery
from storage.goals import add_goal
from storage.imported import FILES
from storage.plausible_archive import ArchiveError, read_archive
from storage.plausible_import import Window, import_archive
from storage.sites import add_site
from tests.server import cli
from tests.traffic import Event, insert

SITE = "hand.test"
TODAY = datetime.now(timezone.utc).date()
D1, D2, D3 = (TODAY - timedelta(days=n) for n in (40, 39, 38))
RANGE = f"{D1:%Y%m%d}_{D3:%Y%m%d}"

VISITORS = [  # date, visitors, pageviews, bounces, visits, visit_duration
    (D1, 10, 30, 4, 12, 600),
    (D2, 7, 15, 3, 8, 250),
    (D3, 5, 9, 1, 6, 301),
]
SOURCES = [  # date, source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term, + counts
    (D1, "Google", "https://www.google.com/", "", "", "", "", "", 20, 6, 7, 400, 2),
    (D1, "", "", "", "", "", "", "", 10, 4, 5, 200, 2),
    (D2, "Google", "https://www.google.com/", "", "", "", "", "", 9, 4, 5, 150, 2),
    (D2, "Newsletter", "", "newsletter", "email", "dec", "", "", 6, 3, 3, 100, 1),
    (D3, "", "", "", "", "", "", "", 9, 5, 6, 301, 1),
]
DEVICES = [(D1, "Desktop", 7, 9, 500, 3, 25), (D1, "Mobile", 3, 3, 100, 1, 5), (D2, "Desktop", 7, 8, 250, 3, 15)]
BROWSERS = [
    (D1, "Chrome", "120.0", 6, 7, 400, 2, 20),
    (D1, "Firefox", "121.0", 4, 5, 200, 2, 10),
    (D2, "Chrome", "120.0", 4, 5, 150, 2, 9),
    (D2, "Chrome", "121.0", 3, 3, 100, 1, 6),
]
# An older Plausible's pages file: without the time on page columns.
PAGES_OLD_HEADER = "date,hostname,page,visits,visitors,pageviews,total_scroll_depth,total_scroll_depth_visits"
PAGES = [(D1, "hand.test", "/", 9, 8, 20, 0, 0), (D1, "hand.test", "/pricing", 3, 3, 10, 120, 2)]
ENTRY_PAGES = [(D1, "/", 8, 9, 450, 3, 20), (D1, "/pricing", 3, 3, 150, 1, 10)]
CUSTOM_EVENTS = [
    (D1, "Signup", "", "", 3, 4),
    (D1, "Outbound Link: Click", "https://example.com/", "", 2, 2),
    (D2, "Signup", "", "", 1, 1),
]


def _csv(header: str, rows: list[tuple]) -> str:
    lines = [header] + [",".join(f'"{v}"' if isinstance(v, str) else str(v) for v in row) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def _header(table: str) -> str:
    return ",".join(FILES[table].names)


def hand_built() -> dict[str, str]:
    return {
        f"imported_visitors_{RANGE}.csv": _csv(_header("imported_visitors"), VISITORS),
        f"imported_sources_{RANGE}.csv": _csv(_header("imported_sources"), SOURCES),
        f"imported_devices_{RANGE}.csv": _csv(_header("imported_devices"), DEVICES),
        f"browsers_{RANGE}.csv": _csv(_header("imported_browsers"), BROWSERS),  # the prefix is optional
        f"imported_pages_{RANGE}.csv": _csv(PAGES_OLD_HEADER, PAGES),
        f"imported_entry_pages_{RANGE}.csv": _csv(_header("imported_entry_pages"), ENTRY_PAGES),
        f"imported_custom_events_{RANGE}.csv": _csv(_header("imported_custom_events"), CUSTOM_EVENTS),
    }


def zipped(path: Path, files: dict[str, str | bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def rate(part: int, whole: int, scale: int = 100) -> int:
    return int((Decimal(scale * part) / Decimal(whole)).quantize(Decimal(1), ROUND_HALF_UP))


@pytest.fixture
def fresh(store):
    """The site registered (UTC), with no events and no imports."""
    add_site(store, SITE)
    for table in [*FILES, "site_imports"]:
        store.command(f"ALTER TABLE beacon.{table} DELETE WHERE site = '{SITE}' SETTINGS mutations_sync = 2")
    store.command(f"ALTER TABLE beacon.events DELETE WHERE site = '{SITE}' SETTINGS mutations_sync = 2")
    yield store


def _imported_rows(store) -> int:
    counts = [
        store.rows(f"SELECT count() FROM beacon.{t} WHERE site = '{SITE}'")[0][0] for t in [*FILES, "site_imports"]
    ]
    return sum(counts)


def _query(metrics: tuple[str, ...], **more) -> StatsQuery:
    start, end = start_of(D1, "UTC"), start_of(D3 + timedelta(days=1), "UTC")
    return StatsQuery(SITE, start, end, metrics, imports=True, **more)


def _import(store, path: Path, window: Window | None = None, **more):
    return import_archive(store, SITE, read_archive(path, 1 << 30, 200), window or Window(D1, None), **more)


def test_a_hand_built_archive_reads_back_as_plausible_adds_it_up(fresh, tmp_path):
    _import(fresh, zipped(tmp_path / "a.zip", hand_built()))
    visits = sum(r[4] for r in VISITORS)
    got = queries.aggregate(fresh, _query(("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")))
    assert got == {
        "visitors": sum(r[1] for r in VISITORS),
        "visits": visits,
        "pageviews": sum(r[2] for r in VISITORS),
        "bounce_rate": rate(sum(r[3] for r in VISITORS), visits),
        "visit_duration": rate(sum(r[5] for r in VISITORS), visits, 1),
    }
    events = queries.aggregate(fresh, _query(("events",)))["events"]
    assert events == sum(r[2] for r in VISITORS) + sum(r[5] for r in CUSTOM_EVENTS)
    series = queries.timeseries(fresh, _query(("visitors",), interval="date"))
    assert series == [{"date": str(r[0]), "visitors": r[1]} for r in VISITORS]


def test_hand_built_breakdowns_name_values_as_beacon_does(fresh, tmp_path):
    _import(fresh, zipped(tmp_path / "a.zip", hand_built()))
    by_source = queries.breakdown(fresh, _query(("visitors", "visits"), property="visit:source"))
    expected: dict[str, list[int]] = {}
    for row in SOURCES:
        found = expected.setdefault(row[1] or "Direct / None", [0, 0])
        found[0], found[1] = found[0] + row[9], found[1] + row[10]
    assert {r["source"]: [r["visitors"], r["visits"]] for r in by_source} == expected
    devices = queries.breakdown(fresh, _query(("visitors",), property="visit:device"))
    assert {r["device"]: r["visitors"] for r in devices} == {"desktop": 14, "mobile": 3}
    versions = queries.breakdown(
        fresh,
        _query(("visitors",), property="visit:browser_version", filters=(Filter("visit:browser", "==", ("Chrome",)),)),
    )
    assert sorted((r["browser"], r["browser_version"], r["visitors"]) for r in versions) == [
        ("Chrome", "120.0", 10),
        ("Chrome", "121.0", 3),
    ]
    pages = queries.breakdown(fresh, _query(("visitors", "pageviews", "bounce_rate"), property="event:page"))
    assert pages == [
        {"page": "/", "visitors": 8, "pageviews": 20, "bounce_rate": rate(3, 9)},
        {"page": "/pricing", "visitors": 3, "pageviews": 10, "bounce_rate": rate(1, 3)},
    ]
    names = queries.breakdown(fresh, _query(("visitors", "events"), property="event:name"))
    assert {r["name"]: (r["visitors"], r["events"]) for r in names} == {
        "pageview": (22, 54),
        "Signup": (4, 5),
        "Outbound Link: Click": (2, 2),
    }


def test_importing_the_same_archive_again_replaces_it(fresh, tmp_path):
    path = zipped(tmp_path / "a.zip", hand_built())
    first = _import(fresh, path)
    rows = _imported_rows(fresh)
    again = _import(fresh, path)
    assert again.import_id == first.import_id and again.replaced == (first.import_id,)
    assert _imported_rows(fresh) == rows
    assert queries.aggregate(fresh, _query(("visitors",)))["visitors"] == sum(r[1] for r in VISITORS)


def test_another_archive_over_the_same_days_is_refused_unless_replacing(fresh, tmp_path):
    _import(fresh, zipped(tmp_path / "a.zip", hand_built()))
    other = {f"imported_visitors_{RANGE}.csv": _csv(_header("imported_visitors"), [(D2, 1, 1, 1, 1, 1)])}
    with pytest.raises(ArchiveError, match="overlap the site's earlier import"):
        _import(fresh, zipped(tmp_path / "b.zip", other))
    _import(fresh, zipped(tmp_path / "b.zip", other), replace=True)
    assert queries.aggregate(fresh, _query(("visitors",)))["visitors"] == 1


def test_days_from_the_sites_first_own_day_are_trimmed(fresh, tmp_path):
    insert(fresh, [Event(SITE, 7, datetime.combine(D2, datetime.min.time(), timezone.utc) + timedelta(hours=3))])
    from storage.plausible_import import first_native_day

    window = Window(D1, first_native_day(fresh, SITE, "UTC"))
    done = _import(fresh, zipped(tmp_path / "a.zip", hand_built()), window)
    assert (done.first, done.last) == (D1, D1)
    assert done.rows["imported_visitors"] == 1 and done.trimmed["imported_visitors"] == 2
    got = queries.aggregate(fresh, _query(("visitors",)))
    assert got["visitors"] == VISITORS[0][1] + 1  # D1 imported, D2's own visitor


def test_an_archive_wholly_after_the_sites_first_own_day_imports_nothing(fresh, tmp_path):
    insert(fresh, [Event(SITE, 7, datetime.combine(D1, datetime.min.time(), timezone.utc) + timedelta(hours=3))])
    from storage.plausible_import import first_native_day

    window = Window(D1 - timedelta(days=5), first_native_day(fresh, SITE, "UTC"))
    with pytest.raises(
        ArchiveError, match=f"no day of the archive is left to import: .* before {D1}, the site's first"
    ):
        _import(fresh, zipped(tmp_path / "a.zip", hand_built()), window)
    assert _imported_rows(fresh) == 0


def _bad(name: str, text: str) -> dict[str, str]:
    return hand_built() | {name: text}


MALFORMED = [
    (
        "columns in another order",
        _bad(f"imported_visitors_{RANGE}.csv", "date,visitors,bounces,pageviews,visits,visit_duration\r\n"),
        "imported_visitors_.* line 1: the header must be exactly date,visitors,pageviews,bounces,visits,visit_duration",
    ),
    (
        "a column missing",
        _bad(f"imported_devices_{RANGE}.csv", "date,device,visitors,visits,visit_duration,bounces\r\n"),
        "imported_devices_.* line 1: the header must be exactly",
    ),
    (
        "a bad date",
        _bad(
            f"imported_visitors_{RANGE}.csv",
            _csv(_header("imported_visitors"), [*VISITORS[:1], ("2024-02-30", 1, 1, 1, 1, 1)]),
        ),
        "imported_visitors_.* line 3 column date: '2024-02-30' is not a date",
    ),
    (
        "a date outside the file's range",
        _bad(
            f"imported_visitors_{RANGE}.csv",
            _csv(_header("imported_visitors"), [(D3 + timedelta(days=1), 1, 1, 1, 1, 1)]),
        ),
        "line 2 column date: .* is outside the file's range",
    ),
    (
        "a bad number",
        _bad(f"imported_sources_{RANGE}.csv", _csv(_header("imported_sources"), [SOURCES[0][:9] + ("6x", 7, 400, 2)])),
        "imported_sources_.* line 2 column visitors: '6x' is not a whole number",
    ),
    (
        "a negative number",
        _bad(f"imported_devices_{RANGE}.csv", _csv(_header("imported_devices"), [(D1, "Desktop", -1, 1, 1, 1, 1)])),
        "line 2 column visitors: '-1' is not a whole number",
    ),
    (
        "a short row",
        _bad(f"imported_devices_{RANGE}.csv", _header("imported_devices") + "\r\n" + f"{D1},Desktop,1,1\r\n"),
        "imported_devices_.* line 2: 4 fields where the header has 7",
    ),
    ("path traversal", _bad(f"../imported_locations_{RANGE}.csv", "x"), "may not hold a path"),
    ("an absolute path", _bad(f"/tmp/imported_locations_{RANGE}.csv", "x"), "may not hold a path"),
    ("a directory", _bad(f"data/imported_locations_{RANGE}.csv", "x"), "may not hold a path"),
    ("an unknown member", _bad("notes.txt", "hello"), "'notes.txt' is not a file of a Plausible archive"),
    ("an unknown table", _bad(f"imported_sessions_{RANGE}.csv", "x"), "is not a file of a Plausible archive"),
    ("a second file of a table", _bad(f"visitors_{RANGE}.csv", "x"), "a second file of imported_visitors"),
    ("a range ending before it starts", _bad(f"imported_locations_{D3:%Y%m%d}_{D1:%Y%m%d}.csv", "x"), "ends before"),
    (
        "not a date in the name",
        _bad("imported_locations_20241301_20241302.csv", "x"),
        "20241301 in its name is not a date",
    ),
    ("not UTF-8", _bad(f"imported_locations_{RANGE}.csv", b"\xff\xfe"), "not UTF-8"),
]


@pytest.mark.parametrize("case, files, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_archive_is_refused_whole(fresh, tmp_path, case, files, message):
    path = zipped(tmp_path / "bad.zip", files)
    with pytest.raises(ArchiveError, match=message):
        _import(fresh, path)
    assert _imported_rows(fresh) == 0


def test_a_zip_bomb_is_refused_before_it_is_unzipped(fresh, tmp_path):
    zeros = b"0" * (30 << 20)  # 30 MiB deflating ~1000:1
    bomb = zipped(tmp_path / "bomb.zip", hand_built() | {f"imported_locations_{RANGE}.csv": zeros})
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ArchiveError, match="over the 200:1 allowed"):
        read_archive(bomb, 1 << 40, 200)
    whole = sum(len(text) for text in hand_built().values())
    with pytest.raises(ArchiveError, match=f"unzips to {whole} bytes, more than the 1000 allowed"):
        read_archive(zipped(tmp_path / "big.zip", hand_built()), 1000, 200)
    assert _imported_rows(fresh) == 0


def test_a_member_unzipping_beyond_its_declared_size_is_refused(tmp_path):
    """A header may lie about a member's size: the bytes actually unzipped are counted."""
    honest = io.BytesIO()
    with zipfile.ZipFile(honest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"imported_visitors_{RANGE}.csv", _csv(_header("imported_visitors"), VISITORS) + "9" * 5000)
    data = bytearray(honest.getvalue())
    declared = len(_csv(_header("imported_visitors"), VISITORS)) + 5000
    small = (100).to_bytes(4, "little")
    for at in _offsets(bytes(data), declared.to_bytes(4, "little")):
        data[at : at + 4] = small  # the local header and the central directory both claim 100 bytes
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="more than its header claims|cannot be unzipped"):
        read_archive(path, 1 << 30, 1000)


def _offsets(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "a.zip"
    path.write_text("date,visitors\n")
    with pytest.raises(ArchiveError, match="is not a zip archive"):
        read_archive(path, 1 << 30, 200)


def test_the_commands_import_and_export(tmp_path):
    """beacon import plausible and beacon export plausible, as a user runs them."""
    data = ["--data-dir", str(tmp_path / "data")]
    cli("sites", "add", SITE, *data)
    archive = zipped(tmp_path / "a.zip", hand_built())
    dry = cli("import", "plausible", str(archive), "--site", SITE, "--dry-run", *data)
    assert f"would import a.zip into {SITE}: days {D1}..{D3}" in dry.stdout
    done = cli("import", "plausible", str(archive), "--site", SITE, *data)
    assert "imported_visitors\t3 rows" in done.stdout and "imported_sources\t5 rows" in done.stdout
    bad = cli(
        "import",
        "plausible",
        str(zipped(tmp_path / "b.zip", _bad("notes.txt", "x"))),
        "--site",
        SITE,
        *data,
        check=False,
    )
    assert bad.returncode == 1 and "b.zip: 'notes.txt' is not a file of a Plausible archive" in bad.stderr
    assert "nothing imported" in bad.stderr
    unknown = cli("import", "plausible", str(archive), "--site", "other.test", *data, check=False)
    assert unknown.returncode == 2 and "other.test is not a registered site" in unknown.stderr
    out = tmp_path / "out.zip"
    made = cli("export", "plausible", "--site", SITE, "--from", str(D1), "--to", str(D3), "--output", str(out), *data)
    assert "10 files" in made.stdout
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{table}_{RANGE}.csv" for table in FILES)
        for name in names:
            header = archive.read(name).decode().split("\n")[0]
            assert header.replace('"', "") == _header(name.rsplit("_", 2)[0])
    missing = cli("export", "plausible", "--site", SITE, "--output", str(out), *data, check=False)
    assert missing.returncode == 1 and "no events of its own" in missing.stderr


def test_the_imported_tables_have_the_declared_columns(store):
    for table, file in FILES.items():
        rows = store.rows(
            "SELECT name FROM system.columns WHERE database = 'beacon' AND table = {t:String} ORDER BY position",
            {"t": table},
        )
        assert tuple(r[0] for r in rows) == ("site", "import_id") + file.names, table


def test_quoted_commas_and_newlines_and_the_largest_count_are_read(fresh, tmp_path):
    """A record over two lines, a comma inside quotes and a 20-digit count take the
    field-by-field path, and import as written."""
    header = _header("imported_entry_pages")
    text = (
        f'{header}\r\n{D1},"/a,b",2,3,30,1,5\r\n{D1},"/line\nbreak",1,1,10,0,2\r\n'
        f"{D2},/c,18446744073709551615,1,1,0,1\r\n"
    )
    _import(fresh, zipped(tmp_path / "a.zip", {f"imported_entry_pages_{RANGE}.csv": text}))
    pages = queries.breakdown(fresh, _query(("visits",), property="visit:entry_page"))
    assert {r["entry_page"]: r["visits"] for r in pages} == {"/a,b": 3, "/line\nbreak": 1, "/c": 1}
    too_big = f"{header}\r\n{D1},/c,18446744073709551616,1,1,0,1\r\n"
    with pytest.raises(ArchiveError, match="line 2 column visitors: '18446744073709551616' is not a whole number"):
        _import(fresh, zipped(tmp_path / "b.zip", {f"imported_entry_pages_{RANGE}.csv": too_big}))


# --- goals -----------------------------------------------------------------------------------

D4 = TODAY - timedelta(days=37)  # the site's first day of its own events
GOALS = (("event", "Signup"), ("event", "Outbound Link: Click"), ("page", "/pricing"), ("page", "/blog/*"))
GOAL_PAGES = [  # date, hostname, page, visits, visitors, pageviews, scroll depth, its visits
    (D1, "hand.test", "/", 9, 8, 20, 0, 0),
    (D1, "hand.test", "/pricing", 3, 3, 10, 0, 0),
    (D1, "hand.test", "/blog/a", 4, 4, 6, 0, 0),
    (D1, "hand.test", "/blog/a/comments", 2, 2, 2, 0, 0),  # below /blog/*: * stops at a /
    (D2, "hand.test", "/blog/b", 2, 2, 3, 0, 0),
    (D3, "hand.test", "/pricing", 1, 1, 1, 0, 0),
]
# The site's own day: a visitor who viewed /pricing and signed up, one who read /blog/b and
# followed two links from it, one who left.
AT = datetime.combine(D4, datetime.min.time(), timezone.utc)
OWN = [
    Event(SITE, 1, AT + timedelta(hours=9), path="/pricing"),
    Event(SITE, 1, AT + timedelta(hours=9, minutes=2), type="event", name="Signup", path="/pricing"),
    Event(SITE, 2, AT + timedelta(hours=10), path="/blog/b"),
    Event(
        SITE,
        2,
        AT + timedelta(hours=10, minutes=1),
        type="event",
        name="Outbound Link: Click",
        path="/blog/b",
        props={"url": "https://example.com/"},
    ),
    Event(
        SITE,
        2,
        AT + timedelta(hours=10, minutes=3),
        type="event",
        name="Outbound Link: Click",
        path="/blog/b",
        props={"url": "https://other.example/"},
    ),
    Event(SITE, 3, AT + timedelta(hours=11), path="/"),
]


def _reached(goal: tuple[str, str], page: str) -> bool:
    """A page goal's path: * any characters but /, as beacon documents its goals."""
    pattern = "".join("[^/]*" if c == "*" else re.escape(c) for c in goal[1])
    return re.fullmatch(pattern, page) is not None


def _imported_conversions(goal: tuple[str, str], day: date | None = None) -> tuple[int, int]:
    """(visitors, events) of a goal in the hand-built archive, on ``day`` or every day."""
    on = lambda d: day is None or d == day  # noqa: E731
    if goal[0] == "event":
        rows = [r for r in CUSTOM_EVENTS if r[1] == goal[1] and on(r[0])]
        return sum(r[4] for r in rows), sum(r[5] for r in rows)
    rows = [r for r in GOAL_PAGES if _reached(goal, r[2]) and on(r[0])]
    return sum(r[4] for r in rows), sum(r[5] for r in rows)


def _own_conversions(goal: tuple[str, str]) -> tuple[int, int]:
    def completes(e: Event) -> bool:
        if goal[0] == "event":
            return e.type == "event" and e.name == goal[1]
        return e.type == "pageview" and _reached(goal, e.path)

    done = [e for e in OWN if completes(e)]
    return len({e.visitor_id for e in done}), len(done)


@pytest.fixture
def with_goals(fresh, tmp_path):
    """The hand-built archive's visitors, pages and custom events imported for D1..D3, the
    site's own events on D4, and the goals configured."""
    fresh.command(f"ALTER TABLE beacon.goals DELETE WHERE site = '{SITE}' SETTINGS mutations_sync = 2")
    for kind, value in GOALS:
        add_goal(fresh, SITE, kind, value)
    files = {
        f"imported_visitors_{RANGE}.csv": _csv(_header("imported_visitors"), VISITORS),
        f"imported_pages_{RANGE}.csv": _csv(PAGES_OLD_HEADER, GOAL_PAGES),
        f"imported_custom_events_{RANGE}.csv": _csv(_header("imported_custom_events"), CUSTOM_EVENTS),
    }
    insert(fresh, [replace(e, event_id=str(uuid.uuid4())) for e in OWN])  # a block inserted twice is dropped
    _import(fresh, zipped(tmp_path / "goals.zip", files), Window(D1, D4))
    yield fresh
    fresh.command(f"ALTER TABLE beacon.goals DELETE WHERE site = '{SITE}' SETTINGS mutations_sync = 2")


def _goal_query(metrics: tuple[str, ...], **more) -> StatsQuery:
    start, end = start_of(D1, "UTC"), start_of(D4 + timedelta(days=1), "UTC")
    return StatsQuery(SITE, start, end, metrics, imports=True, **more)


def _percent(part: int, whole: int) -> float:
    return float((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP))


ALL_VISITORS = sum(r[1] for r in VISITORS) + len({e.visitor_id for e in OWN})


def test_a_goal_breakdown_adds_imported_conversions_to_the_sites_own(with_goals):
    got = queries.breakdown(with_goals, _goal_query(("visitors", "events", "conversion_rate"), property="event:goal"))
    expected = {}
    for goal in GOALS:
        (iv, ie), (ov, oe) = _imported_conversions(goal), _own_conversions(goal)
        name = goal[1] if goal[0] == "event" else f"Visit {goal[1]}"
        expected[name] = {"visitors": iv + ov, "events": ie + oe, "conversion_rate": _percent(iv + ov, ALL_VISITORS)}
    assert {r["goal"]: {k: v for k, v in r.items() if k != "goal"} for r in got} == expected
    assert [r["visitors"] for r in got] == sorted((r["visitors"] for r in got), reverse=True)
    assert expected["Visit /blog/*"]["visitors"] == 4 + 2 + 1  # /blog/a, /blog/b, and the site's own /blog/b


@pytest.mark.parametrize("goal", GOALS)
def test_a_goal_filter_adds_imported_conversions_day_by_day(with_goals, goal):
    name = goal[1] if goal[0] == "event" else f"Visit {goal[1]}"
    asked = _goal_query(("visitors", "events", "conversion_rate"), filters=(Filter("event:goal", "==", (name,)),))
    (iv, ie), (ov, oe) = _imported_conversions(goal), _own_conversions(goal)
    assert queries.aggregate(with_goals, asked) == {
        "visitors": iv + ov,
        "events": ie + oe,
        "conversion_rate": _percent(iv + ov, ALL_VISITORS),
    }
    series = queries.timeseries(with_goals, replace(asked, interval="date"))
    daily = [(r[0], *_imported_conversions(goal, r[0]), r[1]) for r in VISITORS]
    own_visitors = len({e.visitor_id for e in OWN})
    daily.append((D4, *_own_conversions(goal), own_visitors))
    assert series == [
        {"date": str(d), "visitors": v, "events": e, "conversion_rate": _percent(v, total)} for d, v, e, total in daily
    ]


def test_goal_answers_say_which_days_came_from_the_import(with_goals):
    from queries.imported import described

    by_goal = _goal_query(("visitors",), property="event:goal")
    assert described(with_goals, by_goal) == {
        "imports_included": True,
        "imported_days": {"from": str(D1), "to": str(D3)},
    }
    mixed = _goal_query(("visitors",), filters=(Filter("event:goal", "==", ("Signup", "Visit /pricing")),))
    assert described(with_goals, mixed) == {"imports_included": False, "imports_skip_reason": "unsupported_query"}
    own = queries.aggregate(with_goals, replace(mixed, imports=False))
    assert queries.aggregate(with_goals, mixed) == own  # answered from the site's own events only
    hourly = _goal_query(("visitors",), interval="hour", filters=(Filter("event:goal", "==", ("Signup",)),))
    assert described(with_goals, hourly)["imports_skip_reason"] == "unsupported_interval"
    # Which visitors did what, or alternatives between filters: no daily sum holds them.
    signed_up = Behaviour((Filter("event:goal", "==", ("Signup",)),))
    either = Either((Filter("event:name", "==", ("Signup",)), Filter("event:name", "==", ("pageview",))))
    for narrowed in (replace(by_goal, behaviours=(signed_up,)), replace(by_goal, property=None, either=(either,))):
        assert described(with_goals, narrowed)["imports_skip_reason"] == "unsupported_query"


def test_a_special_goals_url_adds_the_imported_links(with_goals):
    """An Outbound Link: Click's url, from imported_custom_events' link_url (Plausible's
    imported custom prop; imported.ex, ``event:props:url``), and the site's own clicks."""
    clicks = (Filter("event:goal", "==", ("Outbound Link: Click",)),)
    got = queries.breakdown(with_goals, _goal_query(("visitors", "events"), property="event:props:url", filters=clicks))
    expected: dict[str, list[int]] = {}
    for r in CUSTOM_EVENTS:
        if r[1] == "Outbound Link: Click":
            found = expected.setdefault(r[2] or "(none)", [0, 0])
            found[0], found[1] = found[0] + r[4], found[1] + r[5]
    for e in OWN:
        if e.name == "Outbound Link: Click":
            found = expected.setdefault(e.props.get("url", "(none)"), [0, 0])
            found[0], found[1] = found[0] + 1, found[1] + 1  # one visitor, one click per link
    assert {r["url"]: [r["visitors"], r["events"]] for r in got} == expected
    assert expected["https://example.com/"] == [3, 3]
