from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.geoip import write_city_db


@pytest.fixture(scope="session")
def geoip_db(tmp_path_factory) -> Path:
    return write_city_db(tmp_path_factory.mktemp("geoip") / "city.mmdb")


# A ClickHouse server to run the store's tests against as well as chDB, where one
# exists (not on the project's machines): BEACON_TEST_CLICKHOUSE=http://user:pw@host:8123/
# Its `beacon` database is created, written and truncated: use a throwaway server.
TEST_SERVER = os.environ.get("BEACON_TEST_CLICKHOUSE", "")


@pytest.fixture(scope="session", params=["chdb", "server"] if TEST_SERVER else ["chdb"])
def store(request, tmp_path_factory):
    """A migrated store: the test process's one embedded engine (chDB allows one per
    process) and, with BEACON_TEST_CLICKHOUSE set, that server too (every test using
    this fixture runs on both)."""
    from storage.clickhouse import ClickHouseStore, dsn_for_data_dir
    from storage.migrations import migrate

    dsn = TEST_SERVER if request.param == "server" else dsn_for_data_dir(tmp_path_factory.mktemp("store"))
    store = ClickHouseStore(dsn)
    migrate(store)
    yield store
    store.close()


@pytest.fixture
def events_table(store):
    store.command("TRUNCATE TABLE beacon.events")
    yield store
    store.command("TRUNCATE TABLE beacon.events")
