"""Upgrades (issue 28): a store made by the previous release (commit dd04fbc, rebuilt
here from git) opens and migrates forward with the same Stats API numbers;
`beacon migrate --dry-run` lists what an upgrade will do and changes nothing; a
migration that fails leaves the store as it was and says why."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import zipfile
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from storage.migrations import available
from tests.faults import wait_for
from tests.load import CHROME
from tests.server import BEACON, BeaconServer, cli

REPO = Path(__file__).resolve().parents[1]
PREVIOUS_RELEASE = "dd04fbc"
SITE = "upgrade.example"


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory) -> Path:
    """The previous release's source tree, from this repository's history (CI runs on a clone)."""
    made = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE], capture_output=True)
    assert made.returncode == 0, (
        f"the previous release {PREVIOUS_RELEASE} must be in the clone's history: {made.stderr}"
    )
    archive = made.stdout
    tree = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def old_cli(tree: Path, *args: str) -> str:
    """The CLI of another release: ``python -m`` puts its working directory first on the module path."""
    done = subprocess.run([*BEACON, *args], capture_output=True, text=True, timeout=120, cwd=tree)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _aggregate(url: str, token: str) -> dict:
    today = datetime.now(timezone.utc).date().isoformat()
    answer = httpx.get(
        f"{url}/api/v1/stats/aggregate",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        params={"site_id": SITE, "period": "day", "date": today, "metrics": "visitors,pageviews,events"},
    )
    assert answer.status_code == 200, answer.text
    return {metric: value["value"] for metric, value in answer.json()["results"].items()}


def test_the_previous_releases_store_opens_and_migrates_forward(tmp_path, previous_release):
    data = tmp_path / "data"
    # It is the old code that runs: it has no `beacon backup`.
    assert (
        "No such command 'backup'"
        in subprocess.run([*BEACON, "backup", "--help"], capture_output=True, text=True, cwd=previous_release).stderr
    )
    old_cli(previous_release, "sites", "add", "--data-dir", str(data), SITE)
    token = old_cli(previous_release, "tokens", "create", "--role", "analyst", "--data-dir", str(data)).strip()
    visitors, pages = 7, 3
    with BeaconServer(data, "--trusted-proxy", "127.0.0.1/32", code=previous_release) as server:
        for v in range(visitors):
            body = [{"site": SITE, "url": f"https://{SITE}/p/{p}"} for p in range(pages)]
            answer = httpx.post(
                f"{server.url}/collect",
                content=json.dumps(body),
                headers={"User-Agent": CHROME, "Content-Type": "text/plain", "X-Forwarded-For": f"203.0.113.{v + 1}"},
            )
            assert answer.status_code == 202
        wait_for(
            lambda: _aggregate(server.url, token)["pageviews"] == visitors * pages, 30, "stored by the old release"
        )
        before = _aggregate(server.url, token)
    assert before == {"visitors": visitors, "pageviews": visitors * pages, "events": visitors * pages}

    listed = cli("migrate", "--dry-run", "--data-dir", str(data)).stdout
    old_versions = _versions(previous_release)
    expected = [m for m in available() if m.version not in old_versions]
    assert listed.startswith(f"{len(expected)} migration(s) to apply")
    assert all(f"-- {m.version:04d} {m.name}" in listed for m in expected)
    assert cli("migrate", "--dry-run", "--data-dir", str(data)).stdout == listed  # it changed nothing

    applied = cli("migrate", "--data-dir", str(data)).stdout
    assert applied.startswith(f"applied {len(expected)} migration(s)")
    with BeaconServer(data, "--trusted-proxy", "127.0.0.1/32") as server:
        assert _aggregate(server.url, token) == before
        versions = {row["version"] for row in server.query("SELECT version FROM beacon.schema_migrations")}
        _imports_into_the_upgraded_store(tmp_path, data, server.url, token)
    assert versions == {m.version for m in available()}


def _imports_into_the_upgraded_store(tmp_path: Path, data: Path, url: str, token: str) -> None:
    """The upgraded store takes a Plausible archive (0021's tables), through the running
    server, and reads it back with with_imported=true."""
    days = [datetime.now(timezone.utc).date() - timedelta(days=n) for n in (3, 2)]
    rows = "".join(f"{d},{n},{2 * n},1,{n},60\n" for d, n in zip(days, (4, 5)))
    archive = tmp_path / "plausible.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(
            f"imported_visitors_{days[0]:%Y%m%d}_{days[1]:%Y%m%d}.csv",
            "date,visitors,pageviews,bounces,visits,visit_duration\n" + rows,
        )
    assert (
        "imported_visitors\t2 rows"
        in cli("import", "plausible", str(archive), "--site", SITE, "--data-dir", str(data)).stdout
    )
    answer = httpx.get(
        f"{url}/api/v1/stats/aggregate",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        params={"site_id": SITE, "period": "custom", "date": f"{days[0]},{days[1]}", "with_imported": "true"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"]["visitors"]["value"] == 4 + 5
    assert answer.json()["meta"]["imported_days"] == {"from": str(days[0]), "to": str(days[1])}
    v2 = httpx.post(
        f"{url}/api/v2/query",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        json={
            "site_id": SITE,
            "metrics": ["visitors", "pageviews"],
            "date_range": [str(days[0]), str(days[1])],
            "dimensions": ["time:day"],
            "include": {"imports": True},
        },
    )
    assert v2.status_code == 200, v2.text
    assert [r["metrics"] for r in v2.json()["results"]] == [[4, 8], [5, 10]]
    assert v2.json()["meta"]["imports_included"] is True


def _versions(tree: Path) -> set[int]:
    return {int(p.name.split("_", 1)[0]) for p in (tree / "schemas" / "clickhouse").glob("*.sql")}


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path):
    data = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data), SITE)
    with BeaconServer(data) as server:
        body = [{"site": SITE, "url": f"https://{SITE}/p/{i}"} for i in range(30)]
        httpx.post(
            f"{server.url}/collect",
            content=json.dumps(body),
            headers={"User-Agent": CHROME, "Content-Type": "text/plain"},
        )
        wait_for(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] == 30, 30, "30 rows stored")

    # The next release's schemas, with a migration whose second statement fails after its first changed a table.
    tree = tmp_path / "next-release"
    shutil.copytree(REPO / "schemas", tree / "schemas")
    (tree / "schemas" / "clickhouse" / "9999_broken.sql").write_text(
        "ALTER TABLE beacon.events ADD COLUMN IF NOT EXISTS half_done UInt8;\n"
        "DROP TABLE beacon.sites;\n"
        "ALTER TABLE beacon.no_such_table ADD COLUMN x UInt8;\n"
    )
    before = _schema_and_counts(data)
    failed = subprocess.run(
        [*BEACON, "migrate", "--data-dir", str(data)], capture_output=True, text=True, timeout=120, cwd=tree
    )
    assert failed.returncode == 1
    assert "migration 9999 broken failed" in failed.stderr and "no_such_table" in failed.stderr
    assert "the store is as it was before the upgrade" in failed.stderr
    assert _schema_and_counts(data) == before
    assert not (data / "upgrade-snapshot").exists()


def _schema_and_counts(data: Path) -> tuple:
    query = "SELECT name, create_table_query, total_rows FROM system.tables WHERE database = 'beacon' ORDER BY name"
    out = subprocess.run(
        [*BEACON, "query", "--data-dir", str(data), "--format", "json", query],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return tuple(out.splitlines()), cli("sites", "list", "--data-dir", str(data)).stdout
