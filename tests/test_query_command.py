"""`beacon query` reads, and only reads, unless told --write: beacon.privacy_log is
append-only, and a change made by hand is recorded there first. The same through
the control socket of a running `beacon serve` and on a stopped data directory."""

from __future__ import annotations

import json

from tests.server import BeaconServer, cli

WRITES = [
    "ALTER TABLE beacon.privacy_log DELETE WHERE 1",
    "INSERT INTO beacon.goals (site, kind, value) VALUES ('example.com', 'event', 'x')",
    "TRUNCATE TABLE beacon.events",
    "DROP TABLE beacon.events",
    "SELECT 1 SETTINGS readonly = 0",
    "INSERT INTO FUNCTION file('leak.tsv', 'TSV', 'x String') SELECT 'x'",
]


def _privacy_log(data_dir) -> list[dict]:
    out = cli(
        "query",
        "--data-dir",
        str(data_dir),
        "--format",
        "json",
        "SELECT action, subject, actor FROM beacon.privacy_log ORDER BY ts",
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def _check_read_only(data_dir) -> None:
    cli(
        "privacy",
        "optout",
        "--data-dir",
        str(data_dir),
        "--device-id",
        "device-1",
        "--actor",
        "dpo",
        "--id-key",
        "ab" * 32,
    )
    before = _privacy_log(data_dir)
    assert [row["action"] for row in before] == ["optout"]
    for sql in WRITES:
        refused = cli("query", "--data-dir", str(data_dir), sql, check=False)
        assert refused.returncode != 0, sql
        assert "read-only" in refused.stderr or "readonly" in refused.stderr, (sql, refused.stderr)
    assert _privacy_log(data_dir) == before
    assert cli("query", "--data-dir", str(data_dir), "SELECT count() AS n FROM beacon.events").stdout == "n\n0\n"

    refused = cli("query", "--write", "--data-dir", str(data_dir), WRITES[0], check=False)
    assert refused.returncode != 0 and "append-only" in refused.stderr
    cli(
        "query",
        "--write",
        "--actor",
        "ops-1",
        "--data-dir",
        str(data_dir),
        "ALTER TABLE beacon.events MODIFY COMMENT 'by hand'",
    )
    logged = _privacy_log(data_dir)[-1]
    assert logged["action"] == "query_write" and logged["actor"] == "ops-1"
    assert logged["subject"].startswith("ALTER sha256:") and "by hand" not in logged["subject"]
    _check_statements_without_format(data_dir)


def _check_statements_without_format(data_dir) -> None:
    """SYSTEM FLUSH LOGS takes no FORMAT clause after it (it reads one as a log's
    name): refused as a change without --write, run with it; a statement that does not
    parse still gets its own syntax error."""
    refused = cli("query", "--data-dir", str(data_dir), "SYSTEM FLUSH LOGS", check=False)
    assert refused.returncode != 0 and "read-only" in refused.stderr and "SYSTEM" in refused.stderr, refused.stderr
    assert "Syntax error" not in refused.stderr
    done = cli("query", "--write", "--data-dir", str(data_dir), "SYSTEM FLUSH LOGS", check=False)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert _privacy_log(data_dir)[-1]["subject"].startswith("SYSTEM sha256:")
    for flags in ([], ["--write"]):
        broken = cli("query", *flags, "--data-dir", str(data_dir), "SELEC 1", check=False)
        assert broken.returncode != 0 and "Syntax error" in broken.stderr, (flags, broken.stderr)


def test_query_is_read_only_on_a_stopped_data_directory(tmp_path):
    cli("migrate", "--data-dir", str(tmp_path))
    _check_read_only(tmp_path)


def test_query_is_read_only_through_a_running_server(tmp_path):
    with BeaconServer(tmp_path):
        _check_read_only(tmp_path)


def test_help_says_how_to_write():
    assert "--write" in cli("query", "--help").stdout
