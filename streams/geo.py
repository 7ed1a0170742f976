"""Location from the full IP, with any MaxMind-format City database
(GeoLite2-City, GeoIP2-City, DB-IP City Lite). Only country, region and city are
kept: nothing finer (no coordinates, postcode or network)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import maxminddb

if TYPE_CHECKING:
    from streams.steps import ClientIP


@dataclass(frozen=True, slots=True)
class Location:
    country_code: str = ""
    region: str = ""
    city: str = ""


UNKNOWN = Location()


class GeoLookup:
    def __init__(self, path: Path | None):
        self._reader = maxminddb.open_database(str(path)) if path else None

    def locate(self, ip: ClientIP | None) -> Location:
        if self._reader is None or ip is None:
            return UNKNOWN
        try:
            record = self._reader.get(ip.text)  # text: the reader parses it in C, twice as fast
        except ValueError:
            return UNKNOWN
        if not isinstance(record, dict):
            return UNKNOWN
        return Location(
            country_code=(record.get("country") or {}).get("iso_code", ""),
            region=_english_name(((record.get("subdivisions") or [{}])[0])),
            city=_english_name(record.get("city") or {}),
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _english_name(entry: dict) -> str:
    return (entry.get("names") or {}).get("en", "")
