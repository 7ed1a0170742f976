"""A time zone per site (IANA names, validated against the tz database; UTC by
default): set with `beacon sites add --timezone` and `beacon sites set`, listed by
`beacon sites list`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from storage.sites import Site, add_site, configured_site, find_site, list_sites, remove_site, set_timezone


@pytest.fixture
def sites_store(store):
    yield store
    for site in list_sites(store):
        if site.domain.endswith(".zones.test"):
            remove_site(store, site.domain)


def test_a_site_is_in_utc_unless_given_a_zone(sites_store):
    assert add_site(sites_store, "a.zones.test").timezone == "UTC"
    assert find_site(sites_store, "a.zones.test").timezone == "UTC"
    for name in ("America/Toronto", "Asia/Kathmandu", "Pacific/Kiritimati", "Australia/Lord_Howe", "Etc/GMT+12"):
        assert add_site(sites_store, "b.zones.test", timezone_name=name).timezone == name
        assert find_site(sites_store, "b.zones.test").timezone == name


def test_registering_again_keeps_the_zone_and_setting_it_records_when(sites_store):
    add_site(sites_store, "c.zones.test", timezone_name="Europe/Paris")
    again = add_site(sites_store, "c.zones.test", ["https://c.zones.test"])
    assert (again.timezone, again.origins, again.zone_since) == ("Europe/Paris", ("https://c.zones.test",), None)
    moved = set_timezone(sites_store, "c.zones.test", "America/Toronto")
    stored = find_site(sites_store, "c.zones.test")
    assert stored.timezone == "America/Toronto" and stored.origins == ("https://c.zones.test",)
    assert stored.zone_since is not None and stored.zone_since == moved.zone_since


@pytest.mark.parametrize("name", ["Mars/Olympus", "America/toronto", "EST5", "", "../../etc/passwd", "+05:00"])
def test_an_unknown_zone_is_refused(sites_store, name):
    with pytest.raises(ValueError, match="not a time zone"):
        add_site(sites_store, "d.zones.test", timezone_name=name)
    assert find_site(sites_store, "d.zones.test") is None


def test_the_cli_sets_and_lists_zones(tmp_path):
    def beacon(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "beacon.cli", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert beacon("sites", "add", "shop.example", "--timezone", "America/Toronto").returncode == 0
    assert beacon("sites", "add", "blog.example").returncode == 0
    refused = beacon("sites", "set", "blog.example", "--timezone", "Europe/Pariss")
    assert refused.returncode == 2 and "not a time zone of the tz database: 'Europe/Pariss'" in refused.stderr
    assert beacon("sites", "set", "blog.example", "--timezone", "Asia/Kathmandu").returncode == 0
    listed = beacon("sites", "list").stdout.splitlines()
    assert listed == [
        "blog.example\tAsia/Kathmandu\thttps://blog.example https://www.blog.example",
        "shop.example\tAmerica/Toronto\thttps://shop.example https://www.shop.example",
    ]
    unknown = beacon("sites", "set", "nope.example", "--timezone", "UTC")
    assert unknown.returncode == 2 and "not a registered site" in unknown.stderr


def test_a_kafka_collector_without_a_store_takes_zones_with_its_sites():
    """``beacon collector --site DOMAIN=ZONE``: the zone it stamps on the site's beacons
    (tests/kafka/test_privacy.py follows them through the workers)."""
    assert configured_site("Shop.Example") == Site("shop.example", ("https://shop.example", "https://www.shop.example"))
    assert configured_site("shop.example=Asia/Kathmandu").timezone == "Asia/Kathmandu"
    with pytest.raises(ValueError, match="not a time zone of the tz database: 'Asia/Katmandoo'"):
        configured_site("shop.example=Asia/Katmandoo")
    refused = subprocess.run(
        [sys.executable, "-m", "beacon.cli", "collector", "--kafka", "127.0.0.1:1", "--site", "a.example=Mars/Base"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "Invalid value for --site" in refused.stderr and "Mars/Base" in refused.stderr
