"""The schema, migrations, retention and sites, on the real engine (chDB)."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from schemas.events import Beacon, RawEvent, RequestContext
from storage.migrations import MAX_RETENTION_DAYS, apply_retention, available, migrate
from storage.sink import EventSink
from storage.sites import add_site, list_sites, remove_site
from streams.geo import GeoLookup
from streams.privacy_filter import FilterEnv, filter_event

DAY = 86400
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
# Tables that hold no event- or visitor-level data, so need no TTL.
# api_tokens: hashes of API tokens; users, user_roles, recovery_codes: dashboard accounts (staff, not visitors);
# report_subscriptions, spike_alerts: staff addresses chosen by the operator;
# shares: shared links (a hash of each link's secret, its site, password hash and embed origins);
# visit_sequences: instants of the builder's progress (migration 0025); site_embeds: origins allowed to frame links.
NO_VISITOR_DATA = {
    "schema_migrations",
    "sites",
    "api_tokens",
    "goals",
    "funnels",
    "users",
    "user_roles",
    "recovery_codes",
    "report_subscriptions",
    "spike_alerts",
    "shares",
    "visit_sequences",
    "site_embeds",
}


def _events(ages_in_days: list[float]):
    env = FilterEnv(GeoLookup(None))
    now = time.time()
    return [
        filter_event(
            RawEvent(
                str(uuid.uuid4()),
                Beacon(site="example.com", url=f"https://example.com/{i}"),
                RequestContext(now - age * DAY, "203.0.113.9", CHROME),
            ),
            env,
            Counter(),
        )
        for i, age in enumerate(ages_in_days)
    ]


def _count(store) -> int:
    return store.rows("SELECT count() FROM beacon.events")[0][0]


def test_migrations_are_ordered_and_idempotent(store):
    versions = [m.version for m in available()]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert migrate(store) == []  # the fixture applied them already
    applied = store.rows("SELECT version FROM beacon.schema_migrations FINAL ORDER BY version")
    assert [v for (v,) in applied] == versions


def test_events_table_layout(store):
    ((partition_key, sorting_key, engine),) = store.rows(
        "SELECT partition_key, sorting_key, engine FROM system.tables WHERE database = 'beacon' AND name = 'events'"
    )
    assert engine == "MergeTree"
    assert partition_key == "toYYYYMM(ts)"
    assert sorting_key.startswith("site, toDate(ts)")


def test_every_visitor_level_table_expires_within_two_years(store):
    tables = store.rows("SELECT name, create_table_query, engine FROM system.tables WHERE database = 'beacon'")
    checked = 0
    for name, ddl, engine in tables:
        if name in NO_VISITOR_DATA or name.startswith(".inner") or engine == "MaterializedView":
            continue  # a view stores nothing: its target table has the TTL
        assert " TTL " in ddl, f"{name} has no TTL"
        days = int(ddl.split("toIntervalDay(", 1)[1].split(")", 1)[0])
        assert days <= MAX_RETENTION_DAYS, name
        checked += 1
    assert checked >= 1


def test_rows_older_than_two_years_disappear(events_table):
    store = events_table
    EventSink(store).write(_events([0, 1, 365, 729, 731, 800, 3 * 365]))
    store.command("OPTIMIZE TABLE beacon.events FINAL")
    ages = store.rows("SELECT dateDiff('day', ts, now()) FROM beacon.events ORDER BY ts")
    assert len(ages) == 4
    assert max(a for (a,) in ages) <= 730


def test_rows_that_age_past_the_ttl_later_are_removed(events_table):
    store = events_table
    EventSink(store).write(_events([0, 10, 40, 100]))
    store.command("OPTIMIZE TABLE beacon.events FINAL")
    assert _count(store) == 4
    try:
        apply_retention(store, 30)  # as if 30 days had become the limit
        store.command("ALTER TABLE beacon.events MATERIALIZE TTL SETTINGS mutations_sync = 2")
        store.command("OPTIMIZE TABLE beacon.events FINAL")
        assert _count(store) == 2
    finally:
        apply_retention(store, MAX_RETENTION_DAYS)


@pytest.mark.parametrize("days", [0, 731, 3650])
def test_retention_cannot_exceed_two_years(store, days):
    with pytest.raises(ValueError):
        apply_retention(store, days)


def test_sites_add_list_remove(store):
    add_site(store, "Shop.Example.org.")
    add_site(store, "blog.example.net", ["https://blog.example.net", "http://localhost:3000"])
    sites = {s.domain: s.origins for s in list_sites(store)}
    assert sites["shop.example.org"] == ("https://shop.example.org", "https://www.shop.example.org")
    assert sites["blog.example.net"] == ("https://blog.example.net", "http://localhost:3000")
    add_site(store, "blog.example.net", ["https://example.net"])  # re-adding replaces the origins
    remove_site(store, "shop.example.org")
    sites = {s.domain: s.origins for s in list_sites(store)}
    assert "shop.example.org" not in sites
    assert sites["blog.example.net"] == ("https://example.net",)


@pytest.mark.parametrize("bad", ["", "exa mple.com", "-x.com", "a" * 64 + ".com", "http://x.com"])
def test_site_names_are_validated(store, bad):
    with pytest.raises(ValueError):
        add_site(store, bad)


def test_privacy_audit_finds_planted_personal_data(events_table):
    from storage.audit import audit

    store = events_table
    clean = _events([0, 1])
    assert [f for f in audit(store) if not f.consented] == []  # an empty store is clean
    EventSink(store).write(clean)
    assert [f for f in audit(store) if not f.consented] == []  # so are filtered rows

    planted = _events([0])[0]
    planted.path = "/u/jane@example.com"
    planted.props = {"seen": "198.51.100.23", "hw": "aa:bb:cc:dd:ee:ff"}
    planted.referrer = "https://x.example/6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    planted.ip_truncated = "203.0.113.77"  # not a network address: a full IP
    planted.device_id = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"  # stored with consent
    EventSink(store).write([planted])
    found = {(f.column, f.kind): (f.rows, f.consented) for f in audit(store)}
    assert found[("path", "email")] == (1, False)
    assert found[("props", "ip")] == (1, False)
    assert found[("props", "mac")] == (1, False)
    assert found[("referrer", "device_id")] == (1, False)
    assert found[("ip_truncated", "ip")] == (1, False)
    assert found[("device_id", "device_id")] == (1, True)
    assert ("batch_id", "device_id") not in found


def test_an_objection_added_in_process_survives_a_refresh_that_read_the_table_before_it(store):
    from storage.privacy import OptOutList, record_optout

    env = FilterEnv(GeoLookup(None))
    optouts = OptOutList(store, env.use_objections)
    subject = f"pseudonym-{uuid.uuid4().hex}"
    optouts.add([subject])  # POST /optout: effective at once, INSERT still to come
    optouts.refresh()  # a background refresh that read the table before the INSERT
    assert subject in env.opted_out
    record_optout(store, subject, actor="test")
    optouts.refresh()
    assert subject in env.opted_out and not optouts._unconfirmed
