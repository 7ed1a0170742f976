"""Registered sites: the collector accepts beacons only for these. Each has a time
zone (an IANA name, UTC by default) that cuts its days everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from common import clock, zones
from common.zones import UTC
from storage.clickhouse import DATABASE, Store

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Site:
    domain: str
    origins: tuple[str, ...]
    timezone: str = UTC
    zone_since: datetime | None = None  # figures from this instant on are in this zone; None: all of them

    @property
    def zone(self) -> ZoneInfo:
        return zones.zone(self.timezone)


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def normalise_timezone(name: str) -> str:
    """An IANA time zone name of the tz database (e.g. America/Toronto), as given."""
    value = name.strip()
    if value != UTC and value not in _zone_names():
        raise ValueError(f"not a time zone of the tz database: {name[:60]!r} (e.g. America/Toronto, Europe/Paris, UTC)")
    return value


def configured_site(entry: str) -> Site:
    """A site named on the command line (a Kafka collector's ``--site``, which has no
    store to read registered sites from): ``DOMAIN`` or ``DOMAIN=ZONE``."""
    domain, _, zone_name = entry.partition("=")
    domain = normalise_domain(domain)
    return Site(domain, default_origins(domain), normalise_timezone(zone_name) if zone_name else UTC)


def normalise_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError(f"not a domain name: {domain!r}")
    return value


def default_origins(domain: str) -> tuple[str, ...]:
    return (f"https://{domain}", f"https://www.{domain}")


def normalise_origin(origin: str) -> str:
    value = origin.strip().lower().rstrip("/")
    if not _ORIGIN.match(value):
        raise ValueError(f"an origin is scheme://host[:port], got {origin!r}")
    return value


def add_site(
    store: Store,
    domain: str,
    origins: list[str] | tuple[str, ...] = (),
    timezone_name: str | None = None,
) -> Site:
    """Register ``domain`` (again: its origins, and its zone when given, change)."""
    name = normalise_domain(domain)
    known = find_site(store, name)
    zone_name = (
        normalise_timezone(timezone_name)
        if timezone_name is not None
        else (known.timezone if known is not None else UTC)
    )
    site = Site(name, tuple(normalise_origin(o) for o in origins) or default_origins(name), zone_name)
    return _write(store, site, known)


def set_timezone(store: Store, domain: str, timezone_name: str, since: datetime | None = None) -> Site:
    """Give a registered site another time zone (its origins stay). ``since``: the
    instant from which its figures are cut in the new zone (the days still held raw,
    which are cut again: rollups.rezone); None: now."""
    known = find_site(store, domain)
    if known is None:
        raise ValueError(f"{domain!r} is not a registered site (beacon sites add)")
    site = Site(known.domain, known.origins, normalise_timezone(timezone_name))
    if site.timezone == known.timezone:
        return known
    return _write(store, site, known, since or _instant(round(clock.now() * 1000)))


def _write(store: Store, site: Site, known: Site | None, since: datetime | None = None) -> Site:
    """One row of the site; its zone_since moves when the zone changes."""
    if known is not None and known.timezone == site.timezone:
        since = known.zone_since
    elif known is not None and since is None:  # registered again with another zone
        since = _instant(round(clock.now() * 1000))  # milliseconds, as stored
    store.command(
        f"INSERT INTO {DATABASE}.sites (domain, origins, timezone, zone_since, removed) "
        "VALUES ({d:String}, {o:Array(String)}, {z:String}, fromUnixTimestamp64Milli({s:Int64}, 'UTC'), 0)",
        {
            "d": site.domain,
            "o": list(site.origins),
            "z": site.timezone,
            "s": round(since.timestamp() * 1000) if since is not None else 0,
        },
    )
    return Site(site.domain, site.origins, site.timezone, since)


def find_site(store: Store, domain: str) -> Site | None:
    name = normalise_domain(domain)
    return next((s for s in list_sites(store) if s.domain == name), None)


def remove_site(store: Store, domain: str) -> None:
    """Stop accepting the site's beacons. Its zone stays: its last events are still
    cut in it."""
    known = find_site(store, domain)
    store.command(
        f"INSERT INTO {DATABASE}.sites (domain, origins, timezone, removed) VALUES ({{d:String}}, [], {{z:String}}, 1)",
        {"d": normalise_domain(domain), "z": known.timezone if known is not None else UTC},
    )


def list_sites(store: Store) -> list[Site]:
    # Numbers and text only: through the control socket of a ``serve --workers``
    # process (JSON) they arrive as they left.
    rows = store.rows(
        f"SELECT domain, origins, timezone, toUnixTimestamp64Milli(zone_since) FROM {DATABASE}.sites FINAL "
        "WHERE removed = 0 ORDER BY domain"
    )
    return [
        Site(domain, tuple(origins), zone_name, _instant(since_ms)) for domain, origins, zone_name, since_ms in rows
    ]


def _instant(epoch_ms: int) -> datetime | None:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc) if epoch_ms else None
