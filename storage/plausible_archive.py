"""Plausible's CSV archive as a file: read safely and checked whole, or written.

An archive is a zip of ``imported_<table>_YYYYMMDD_YYYYMMDD.csv`` files, each with a
header row naming Plausible's columns (``storage.imported.FILES``) and one row per
day and value (Plausible's ``lib/plausible/exports.ex``; its importer,
``lib/plausible/imported/csv_importer.ex``, reads the same names and structures).

Reading refuses, before anything is stored: a member whose name is not one of those
(a directory, a path with ``/`` or ``..``, an unknown table, a second file of one
table), more unzipped bytes than ``archive_max_bytes`` or a member unzipping to more
than ``archive_max_ratio`` times its zipped size (a zip bomb; counted on the bytes
actually unzipped, not the sizes the archive claims), a header that is not exactly
the table's, and any field that is not a date or a whole number where one is due.
Each refusal names the file, line and column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import BinaryIO

from storage.imported import FILES, ArchiveFile

MEMBER_NAME = re.compile(r"(?:imported_)?([a-z_]+?)_(\d{8})_(\d{8})\.csv")
MAX_COUNT = 2**64 - 1
CHUNK = 1 << 20


class ArchiveError(ValueError):
    """A malformed or unsafe archive: nothing of it is imported."""


@dataclass(frozen=True)
class Member:
    name: str  # as in the archive
    file: ArchiveFile
    first: date  # the days its name covers, inclusive
    last: date
    text: str  # its CSV, read and decoded
    # Once checked: the columns its header names, its rows per day, and whether each
    # record is one line (``records`` then yields its lines as they are).
    columns: tuple[str, ...] = ()
    days: dict[date, int] = field(default_factory=dict)
    one_line_records: bool = True


@dataclass(frozen=True)
class Archive:
    members: tuple[Member, ...]
    digest: bytes  # SHA-256 of the members' names and contents, in name order

    @property
    def import_id(self) -> int:
        """The import's id: the same archive always gets the same one (re-importing replaces)."""
        return int.from_bytes(self.digest[:8], "big") >> 1  # 63 bits: an integer every JSON reader keeps


def read_archive(path: Path, max_bytes: int, max_ratio: int) -> Archive:
    """The archive at ``path``, every member checked (ArchiveError names the first fault)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            members = [_member(archive, info, max_ratio) for info in _checked_names(infos, max_bytes)]
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path.name} is not a zip archive ({exc})") from None
    members.sort(key=lambda m: m.name)
    digest = hashlib.sha256()
    for m in members:
        digest.update(m.name.encode() + b"\0" + m.text.encode() + b"\0")
    return Archive(tuple(_checked(m) for m in members), digest.digest())


def _checked_names(infos: list[zipfile.ZipInfo], max_bytes: int) -> list[zipfile.ZipInfo]:
    if not infos:
        raise ArchiveError("the archive holds no file")
    seen: dict[str, str] = {}
    for info in infos:
        table = _table_of(info.filename)
        if table in seen:
            raise ArchiveError(f"{info.filename}: a second file of {table} (the first: {seen[table]})")
        seen[table] = info.filename
    claimed = sum(info.file_size for info in infos)
    if claimed > max_bytes:
        raise ArchiveError(
            f"the archive unzips to {claimed} bytes, more than the {max_bytes} allowed (archive_max_bytes)"
        )
    return infos


def _table_of(name: str) -> str:
    if "/" in name or "\\" in name or ".." in name or name.startswith(("/", ".")) or ":" in name:
        raise ArchiveError(f"{name[:200]!r}: a member name may not hold a path (only the archive's CSV files)")
    found = MEMBER_NAME.fullmatch(name)
    if found is None or f"imported_{found.group(1)}" not in FILES:
        known = ", ".join(FILES)
        raise ArchiveError(
            f"{name[:200]!r} is not a file of a Plausible archive: imported_<table>_YYYYMMDD_YYYYMMDD.csv, "
            f"table one of {known}"
        )
    return f"imported_{found.group(1)}"


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_ratio: int) -> Member:
    found = MEMBER_NAME.fullmatch(info.filename)
    file = FILES[f"imported_{found.group(1)}"]
    first, last = _name_day(info.filename, found.group(2)), _name_day(info.filename, found.group(3))
    if last < first:
        raise ArchiveError(f"{info.filename}: the range in its name ends before it starts")
    data = _unzipped(archive, info, max_ratio)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{info.filename}: not UTF-8 text (byte {exc.start})") from None
    return Member(info.filename, file, first, last, text)


def _unzipped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_ratio: int) -> bytes:
    """The member's bytes, read a chunk at a time and refused as soon as they exceed what
    its header claims or ``max_ratio`` times its zipped size."""
    limit = min(info.file_size, max(info.compress_size, 1) * max_ratio)
    if info.file_size > limit:
        raise ArchiveError(
            f"{info.filename}: unzips to {info.file_size} bytes from {info.compress_size}, over the "
            f"{max_ratio}:1 allowed (archive_max_ratio): a zip bomb?"
        )
    out = io.BytesIO()
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                out.write(chunk)
                if out.tell() > limit:
                    raise ArchiveError(
                        f"{info.filename}: unzips to more than its header claims ({info.file_size} bytes)"
                    )
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise ArchiveError(f"{info.filename}: cannot be unzipped ({exc})") from None
    return out.getvalue()


def _name_day(name: str, digits: str) -> date:
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise ArchiveError(f"{name}: {digits} in its name is not a date (YYYYMMDD)") from None


def _checked(member: Member) -> Member:
    """``member`` with its rows per day, every field checked: each line against a pattern
    of its columns (a date, a text, a number of at most 19 digits), and the distinct
    dates once each. A line the pattern does not take (a fault, or a record over
    several lines, or a 20-digit count) sends the file through ``rows``, which parses
    it field by field and names the line and column of a fault."""
    header_line, _, body = member.text.partition("\n")
    header = next(csv.reader([header_line.rstrip("\r")]), None)
    width = _checked_header(member, header)
    pattern = _row_pattern(member.file, width)
    counted: Counter[str] = Counter()
    for line in body.split("\n"):
        found = pattern.fullmatch(line) if line else None
        if found is None and line:
            return _checked_slowly(member, width)
        if found is not None:
            counted[found.group(1) or found.group(2)] += 1
    days = {}
    for text, count in counted.items():
        day = _parsed_day(text)
        if day is None or not member.first <= day <= member.last:
            return _checked_slowly(member, width)
        days[day] = count
    return replace(member, columns=member.file.names[:width], days=days)


def _checked_slowly(member: Member, width: int) -> Member:
    days: Counter[date] = Counter(day for day, _ in rows(member))
    return replace(member, columns=member.file.names[:width], days=dict(days), one_line_records=False)


def _row_pattern(file: ArchiveFile, width: int) -> re.Pattern:
    fields = []
    for column in file.columns[:width]:
        if column.type == "Date":
            fields.append(r'(?:"(\d{4}-\d{2}-\d{2})"|(\d{4}-\d{2}-\d{2}))')
        elif column.type == "String":
            fields.append(r'(?:"(?:[^"\n]|"")*"|[^,"\r\n]*)')
        else:
            fields.append(r'(?:"\d{1,19}"|\d{1,19})')
    return re.compile(",".join(fields) + "\r?")


def _parsed_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def records(member: Member) -> Iterator[tuple[date, str]]:
    """Each checked data row of ``member``: its day, and its record as one CSV line."""
    if member.one_line_records:
        _, _, body = member.text.partition("\n")
        days = {d.isoformat(): d for d in member.days}
        for line in body.split("\n"):
            if line:
                yield days[line[1:11] if line[0] == '"' else line[:10]], line.rstrip("\r")
        return
    for day, values in rows(member):
        out = io.StringIO()
        csv.writer(out, lineterminator="", quoting=csv.QUOTE_NONNUMERIC).writerow(
            [day.isoformat(), *values[1 : len(member.columns)]]
        )
        yield day, out.getvalue()


def rows(member: Member) -> Iterator[tuple[date, list]]:
    """Each data row of ``member``: its day, and its fields typed (text, or int for a
    count), in the table's column order; the optional columns it lacks are 0."""
    reader = csv.reader(io.StringIO(member.text, newline=""), strict=True)
    columns = member.file.columns
    try:
        header = next(reader, None)
        width = _checked_header(member, header)
        missing = [0] * (len(columns) - width)
        for row in reader:
            day, values = _typed(member, reader.line_num, row, width)
            yield day, values + missing
    except csv.Error as exc:
        raise ArchiveError(f"{member.name} line {reader.line_num}: not CSV ({exc})") from None


def _checked_header(member: Member, header: list[str] | None) -> int:
    names, required = member.file.names, member.file.required
    if header is not None and (tuple(header) == names or tuple(header) == required):
        return len(header)
    expected = ",".join(names)
    also = f" (or without {', '.join(member.file.optional)})" if member.file.optional else ""
    got = ",".join(header or [])[:300]
    raise ArchiveError(f"{member.name} line 1: the header must be exactly {expected}{also}; got {got!r}")


def _typed(member: Member, line: int, row: list[str], width: int) -> tuple[date, list]:
    if len(row) != width:
        raise ArchiveError(f"{member.name} line {line}: {len(row)} fields where the header has {width}")
    columns = member.file.columns
    day = _day(member, line, row[0])
    values: list = [day]
    for column, text in zip(columns[1:width], row[1:]):
        values.append(text if column.type == "String" else _count(member, line, column.name, text))
    return day, values


def _day(member: Member, line: int, text: str) -> date:
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ArchiveError(f"{member.name} line {line} column date: {text[:40]!r} is not a date (YYYY-MM-DD)")
    if not member.first <= day <= member.last:
        raise ArchiveError(
            f"{member.name} line {line} column date: {day} is outside the file's range {member.first}..{member.last}"
        )
    return day


def _count(member: Member, line: int, column: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_COUNT:
        raise ArchiveError(f"{member.name} line {line} column {column}: {text[:40]!r} is not a whole number")
    return int(text)


def write_archive(path: Path | BinaryIO, files: dict[str, bytes]) -> None:
    """A zip of the named CSV files (deflated, as Plausible's archives are read), to a
    file or into a buffer (the dashboard's download)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def file_name(table: str, first: date, last: date) -> str:
    """Plausible's name of a file of the archive: ``imported_visitors_20240101_20241231.csv``."""
    return f"{table}_{first:%Y%m%d}_{last:%Y%m%d}.csv"
