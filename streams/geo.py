"""Location from the full IP, with any MaxMind-format City database
(GeoLite2-City, GeoIP2-City, DB-IP City Lite). Only country, region and city are
kept: nothing finer (no coordinates, postcode or network)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import maxminddb

from streams.steps import dropped_bits

if TYPE_CHECKING:
    from streams.steps import ClientIP


class Location(NamedTuple):  # immutable, and cheaper to make than a frozen dataclass
    country_code: str = ""
    region: str = ""
    city: str = ""


UNKNOWN = Location()


# Lookups are remembered per network the IP truncation keeps (/24 for IPv4, /48 for
# IPv6 by default, or the shorter prefixes configured): the most of an address we
# may store (docs/privacy.md), never a full IP. Only a network the database answers
# for as a whole is remembered (its record covers all of it), so the answer is the
# one the full IP would get. The next beacons of a
# visitor, or of their neighbours, then skip decoding the database record (the
# larger part of a lookup: a real City record holds names in eight languages).
# 6to4 addresses (2002::/16) hold a whole IPv4 address within their /48: they are
# remembered per 2002::/40, the IPv4 /24 inside them (as truncate_ip keeps them).
_CACHE_SIZE = 16_384  # networks; emptied when full


class GeoLookup:
    def __init__(self, path: Path | None, ipv4_prefix: int = 24, ipv6_prefix: int = 48):
        self._reader = maxminddb.open_database(str(path)) if path else None
        self._by_network: dict[tuple[int, int], Location] = {}
        self._ipv4_prefix = ipv4_prefix
        self._ipv6_prefix = ipv6_prefix

    def locate(self, ip: ClientIP | None) -> Location:
        if self._reader is None or ip is None:
            return UNKNOWN
        if ip.version == 4:  # most clients: without the call to dropped_bits
            dropped, prefix = 32 - self._ipv4_prefix, self._ipv4_prefix
        else:
            dropped = dropped_bits(ip, self._ipv4_prefix, self._ipv6_prefix)
            prefix = 128 - dropped
        network = (ip.version, ip.value >> dropped)
        location = self._by_network.get(network)
        if location is None:
            location, record_prefix = self._lookup(ip)
            if record_prefix <= prefix:
                if len(self._by_network) >= _CACHE_SIZE:
                    self._by_network.clear()
                self._by_network[network] = location
        return location

    def _lookup(self, ip: ClientIP) -> tuple[Location, int]:
        """The location, and the prefix length of the database network that holds it."""
        try:
            # text: the reader parses it in C, twice as fast
            record, prefix = self._reader.get_with_prefix_len(ip.text)  # type: ignore[union-attr]
        except ValueError:
            return UNKNOWN, 128
        if not isinstance(record, dict):
            return UNKNOWN, prefix
        return Location(
            country_code=(record.get("country") or {}).get("iso_code", ""),
            region=_english_name(((record.get("subdivisions") or [{}])[0])),
            city=_english_name(record.get("city") or {}),
        ), prefix

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()



def _english_name(entry: dict) -> str:
    return (entry.get("names") or {}).get("en", "")
