"""Location from the full IP, with any MaxMind-format City database
(GeoLite2-City, GeoIP2-City, DB-IP City Lite). Only country, region and city are
kept: nothing finer (no coordinates, postcode or network)."""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
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
# may store (docs/privacy.md), never a full IP. For a network the database answers
# for as a whole, that is its answer. For one the database splits (the halves of a
# /24 in two cities), it is the database's map of the network, read from the
# database part by part, not from visitors' addresses; a full IP then finds its
# part in it, and gets the answer it would get from the database. The next beacons
# of a visitor, or of their neighbours, then skip decoding the database record (the
# larger part of a lookup: a real City record holds names in eight languages).
# 6to4 addresses (2002::/16) hold a whole IPv4 address within their /48: they are
# remembered per 2002::/40, the IPv4 /24 inside them (as truncate_ip keeps them).
_CACHE_SIZE = 16_384  # networks; emptied when full
_MAX_PARTS = 16  # of a split network's map; a network split finer is looked up every time


class _Split(NamedTuple):
    """A truncated network the database splits: the first address of each part, in
    order, and the part's location."""

    starts: list[int]
    locations: list[Location]


_TOO_SPLIT = _Split([], [])


class GeoLookup:
    def __init__(self, path: Path | None, ipv4_prefix: int = 24, ipv6_prefix: int = 48):
        self._reader = maxminddb.open_database(str(path)) if path else None
        self._by_network: dict[tuple[int, int], Location | _Split] = {}
        self._ipv4_prefix = ipv4_prefix
        self._ipv6_prefix = ipv6_prefix

    def locate(self, ip: ClientIP | None) -> Location:
        if self._reader is None or ip is None:
            return UNKNOWN
        # (IPv4, most clients, without the call to dropped_bits)
        dropped = 32 - self._ipv4_prefix if ip.version == 4 else dropped_bits(ip, self._ipv4_prefix, self._ipv6_prefix)
        network = (ip.version, ip.value >> dropped)
        known = self._by_network.get(network)
        if known is None:
            known = self._learn(ip, dropped)
            if len(self._by_network) >= _CACHE_SIZE:
                self._by_network.clear()
            self._by_network[network] = known
        if isinstance(known, Location):
            return known
        if known is _TOO_SPLIT:
            return self._lookup(ip.text)[0]
        return known.locations[bisect_right(known.starts, ip.value) - 1]

    def _learn(self, ip: ClientIP, dropped: int) -> Location | _Split:
        """What to remember of the truncated network around ``ip``."""
        location, record_prefix = self._lookup(ip.text)
        bits = 32 if ip.version == 4 else 128
        if record_prefix <= bits - dropped:  # one database network holds it all
            return location
        address = ip.value >> dropped << dropped
        end = address + (1 << dropped)
        starts: list[int] = []
        locations: list[Location] = []
        while address < end:
            if len(starts) == _MAX_PARTS:
                return _TOO_SPLIT
            location, record_prefix = self._lookup(
                (ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address)(address)
            )
            starts.append(address)
            locations.append(location)
            address += 1 << max(bits - record_prefix, 0)  # (an unreadable entry: one address)
        return _Split(starts, locations)

    def _lookup(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[Location, int]:
        """The location, and the prefix length of the database network that holds it.
        (A ClientIP's text: the reader parses it in C, twice as fast as an object.)"""
        try:
            record, prefix = self._reader.get_with_prefix_len(address)  # type: ignore[union-attr]
        except ValueError:
            return UNKNOWN, 128
        if not isinstance(record, dict):
            return UNKNOWN, prefix
        return Location(
            country_code=(record.get("country") or {}).get("iso_code", ""),
            region=_english_name((record.get("subdivisions") or [{}])[0]),
            city=_english_name(record.get("city") or {}),
        ), prefix

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _english_name(entry: dict) -> str:
    return (entry.get("names") or {}).get("en", "")
