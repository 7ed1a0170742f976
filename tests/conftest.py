from __future__ import annotations

from pathlib import Path

import pytest

from tests.geoip import write_city_db


@pytest.fixture(scope="session")
def geoip_db(tmp_path_factory) -> Path:
    return write_city_db(tmp_path_factory.mktemp("geoip") / "city.mmdb")


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """The test process's one embedded engine (chDB allows one per process), migrated."""
    from storage.clickhouse import ClickHouseStore, dsn_for_data_dir
    from storage.migrations import migrate

    store = ClickHouseStore(dsn_for_data_dir(tmp_path_factory.mktemp("store")))
    migrate(store)
    yield store
    store.close()


@pytest.fixture
def events_table(store):
    store.command("TRUNCATE TABLE beacon.events")
    yield store
    store.command("TRUNCATE TABLE beacon.events")
