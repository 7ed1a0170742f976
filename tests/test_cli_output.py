"""What the CLI prints a newcomer: words when there is nothing to list, and JSON as
other tools write it."""
from __future__ import annotations

import json

from tests.server import BeaconServer, cli

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
