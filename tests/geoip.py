"""A small MaxMind-format City database written for the tests (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network → (country ISO code, region, city). The two halves of 203.0.113.0/24 lie in
# different cities on purpose: only a lookup on the full IP can tell them apart.
NETWORKS = {
    "203.0.113.0/25": ("CA", "Quebec", "Montreal"),
    "203.0.113.128/25": ("CA", "Ontario", "Toronto"),
    "198.51.100.0/24": ("FR", "Île-de-France", "Paris"),
    "2001:db8:1::/48": ("DE", "Land Berlin", "Berlin"),
    "2001:db8:2::/48": ("JP", "Tokyo", "Tokyo"),
}


def write_city_db(path: Path) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-City",
        languages=["en"],
        description="beacon test City database",
    )
    for network, (country, region, city) in NETWORKS.items():
        writer.insert_network(
            IPSet([network]),
            {
                "country": {"iso_code": country, "names": {"en": country}},
                "subdivisions": [{"iso_code": "XX", "names": {"en": region}}],
                "city": {"names": {"en": city}},
                "location": {"latitude": 45.5, "longitude": -73.6},  # finer than we keep: must not leak
                "postal": {"code": "H3Z"},
            },
        )
    writer.to_db_file(str(path))
    return path
