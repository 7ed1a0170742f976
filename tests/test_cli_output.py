"""What the CLI prints a newcomer: words when there is nothing to list, JSON as other
tools write it, and one line, not a traceback, when the store is taken."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.server import BeaconServer, cli

ROOT = Path(__file__).resolve().parent.parent

URL = "https://example.com/pricing/a/b"


def test_dlq_list_without_dead_letters_says_so(tmp_path):
    cli("migrate", "--data-dir", str(tmp_path))
    listed = cli("dlq", "list", "--data-dir", str(tmp_path))
    assert listed.stdout == "no dead letters\n"


def test_query_json_keeps_slashes_as_they_are(tmp_path):
    """Read-only and --write, on a stopped data directory and through a running server."""
    cli("migrate", "--data-dir", str(tmp_path))
    sql = f"SELECT '{URL}' AS url, 'a\\\\/b' AS backslash_then_slash"
    expected = {"url": URL, "backslash_then_slash": "a\\/b"}

    def printed(*extra: str) -> str:
        return cli("query", "--data-dir", str(tmp_path), "--format", "json", *extra, sql).stdout

    for out in (printed(), printed("--write")):
        assert "\\/" not in out.replace("\\\\/", "")  # "/" escaped nowhere
        assert json.loads(out) == expected
    with BeaconServer(tmp_path):
        out = printed()
        assert URL in out and json.loads(out) == expected


def test_a_store_held_by_another_process_is_said_in_one_line(tmp_path):
    """What a newcomer hits when typing `beacon sites add` while `beacon serve` is still
    starting: the engine is taken, and no control socket answers yet."""
    cli("migrate", "--data-dir", str(tmp_path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom storage.clickhouse import ClickHouseStore, dsn_for_data_dir\n"
            f"store = ClickHouseStore(dsn_for_data_dir({str(tmp_path)!r}))\nstore.rows('SELECT 1')\n"
            "print('holding', flush=True)\ntime.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        refused = cli("sites", "add", "--data-dir", str(tmp_path), "example.com", check=False)
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"Error: cannot open the store in {tmp_path}: another process may hold it" in refused.stderr
