"""How a CLI command reaches the store: the one of --clickhouse, else the data
directory's, through the running server when one owns it, else opened in the command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from clickhouse_connect.driver.exceptions import ProgrammingError

from beacon.config import Settings
from storage.clickhouse import ClickHouseStore, Store, dsn_for_data_dir
from storage.control import RemoteStore, connect_if_served


@contextmanager
def open_store(settings: Settings, must_exist: bool = False, migrated: bool = False) -> Iterator[Store]:
    """The store named by --clickhouse, else the data directory's: through the running
    server when one owns it, else opened here. ``migrated``: bring a store opened here
    to the current schema first (a running server did so when it started)."""
    if settings.clickhouse:
        store: Store = ClickHouseStore(settings.clickhouse)
    elif (remote := connect_if_served(settings.data_dir)) is not None:
        store = remote
    else:
        if must_exist and not (settings.data_dir / "clickhouse").is_dir():
            raise click.ClickException(
                f"no store in {settings.data_dir} (run `beacon migrate` or `beacon serve` first)"
            )
        store = _open_data_dir(settings.data_dir)
    try:
        if migrated and not isinstance(store, RemoteStore):
            from storage.migrations import migrate

            migrate(store)
        yield store
    finally:
        store.close()


def _open_data_dir(data_dir: Path) -> Store:
    """The embedded engine of ``data_dir``, opened in this process. Another process
    holding it without a control socket yet (a `beacon serve` still starting) is the
    usual reason it cannot be: said in one line, not as a traceback."""
    try:
        return ClickHouseStore(dsn_for_data_dir(data_dir))
    except ProgrammingError as exc:
        raise click.ClickException(
            f"cannot open the store in {data_dir}: another process may hold it (a `beacon serve` still starting: "
            "try again once it answers /readyz)"
        ) from exc
