"""Registered sites: the collector accepts beacons only for these."""
from __future__ import annotations

import re
from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Site:
    domain: str
    origins: tuple[str, ...]


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


def add_site(store: Store, domain: str, origins: list[str] | tuple[str, ...] = ()) -> Site:
    name = normalise_domain(domain)
    site = Site(name, tuple(normalise_origin(o) for o in origins) or default_origins(name))
    store.command(
        f"INSERT INTO {DATABASE}.sites (domain, origins, removed) VALUES ({{d:String}}, {{o:Array(String)}}, 0)",
        {"d": site.domain, "o": list(site.origins)},
    )
    return site


def remove_site(store: Store, domain: str) -> None:
    store.command(
        f"INSERT INTO {DATABASE}.sites (domain, origins, removed) VALUES ({{d:String}}, [], 1)",
        {"d": normalise_domain(domain)},
    )


def list_sites(store: Store) -> list[Site]:
    rows = store.rows(
        f"SELECT domain, origins FROM {DATABASE}.sites FINAL WHERE removed = 0 ORDER BY domain"
    )
    return [Site(domain, tuple(origins)) for domain, origins in rows]
