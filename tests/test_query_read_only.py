"""`beacon query` without --write reaches nothing outside the store: no file written
or read, no URL or remote table, no dictionary, no SYSTEM or SET, whatever the
statement kind or nesting (issue 27, item 1; issue 26, item 10). Each case from the
issue through the CLI (on a stopped data directory and through a running server),
then a Hypothesis-made set of nestings on the store itself. A tripwire HTTP server
counts every request and a secret file must never show up in what comes back."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.read_only_sql import WRITE_REFUSAL, ReadOnlyRefusal
from tests.server import BeaconServer, cli, free_port

SECRET = "s3cr3t-line-of-a-private-file"


class Tripwire:
    """An HTTP server that answers 200 and counts the requests it got."""

    def __init__(self):
        self.hits = 0
        tripwire = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                tripwire.hits += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"x\ty\n")

            do_HEAD = do_POST = do_PUT = do_GET

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tripwire():
    wire = Tripwire()
    yield wire
    wire.close()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "private.tsv"
    path.write_text(f"{SECRET}\tmore\n")
    return path


def _outside_cases(secret: Path, out: Path, port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}"
    return [
        f"SELECT 'x' INTO OUTFILE '{out}' TRUNCATE",
        f"SELECT 'x' INTO OUTFILE '{out}' APPEND",
        f"SELECT 'x' INTO OUTFILE '{out}' AND STDOUT",
        f"DESCRIBE TABLE file('{secret}', 'TSVWithNames')",
        f"SELECT * FROM file('{secret}', 'TSV')",
        f"SELECT file('{secret}')",
        f"DESCRIBE TABLE url('{url}/t.tsv', 'TSVWithNames')",
        f"SELECT * FROM url('{url}/t.tsv', 'TSV', 'a String, b String')",
        f"DESCRIBE TABLE s3('{url}/bucket/t.tsv', 'TSVWithNames')",
        f"SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        f"SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
        "SELECT * FROM executable('cat /etc/hostname', 'TSV', 'x String')",
        "SELECT * FROM input('x String')",
        "SELECT * FROM dictionary('beacon.no_such_dictionary')",
        "SELECT dictGet('beacon.no_such_dictionary', 'x', 1)",
    ]


WRITE_CASES = [
    "DELETE FROM beacon.events WHERE 1",
    "SYSTEM DROP DNS CACHE",
    "SYSTEM RELOAD DICTIONARIES",
    "SET max_threads = 1",
    "OPTIMIZE TABLE beacon.events",
    "KILL QUERY WHERE 1",
]


def _check_cli(data_dir: Path, secret: Path, tripwire: Tripwire) -> None:
    out = data_dir.parent / "outfile.tsv"
    out.write_text("kept\n")
    for sql in _outside_cases(secret, out, tripwire.port):
        refused = cli("query", "--data-dir", str(data_dir), sql, check=False)
        assert refused.returncode != 0, sql
        assert "read-only" in refused.stderr, (sql, refused.stderr)
        assert SECRET not in refused.stdout + refused.stderr, sql
    for sql in WRITE_CASES:
        refused = cli("query", "--data-dir", str(data_dir), sql, check=False)
        assert refused.returncode != 0, sql
        assert WRITE_REFUSAL in refused.stderr, (sql, refused.stderr)
    assert out.read_text() == "kept\n"
    assert tripwire.hits == 0
    answered = cli("query", "--data-dir", str(data_dir), "SELECT count() AS n FROM beacon.events")
    assert answered.stdout == "n\n0\n"


def test_nothing_outside_the_store_on_a_stopped_data_directory(tmp_path, secret_file, tripwire):
    data_dir = tmp_path / "data"
    cli("migrate", "--data-dir", str(data_dir))
    _check_cli(data_dir, secret_file, tripwire)


def test_nothing_outside_the_store_through_a_running_server(tmp_path, secret_file, tripwire):
    data_dir = tmp_path / "data"
    cli("migrate", "--data-dir", str(data_dir))
    with BeaconServer(data_dir):
        _check_cli(data_dir, secret_file, tripwire)


def test_reads_still_pass(store):
    """The guard is no blanket refusal: the reads people run do run."""
    for sql in [
        "SELECT count() FROM beacon.events",
        "SHOW TABLES FROM beacon",
        "DESCRIBE TABLE beacon.events",
        "EXPLAIN SELECT 1",
        "EXISTS TABLE beacon.events",
        "SELECT sum(number) FROM numbers(10)",
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t UNION ALL SELECT 2",
        "SELECT * FROM view(SELECT 1) AS v JOIN (SELECT 1 AS y) AS j ON 1",
        "SELECT 'file(x) url(y)' AS `file`, 'INTO OUTFILE' AS url",
    ]:
        store.read_only_query(sql, "TabSeparated")


# Nestings: a core that reaches outside (a table or a scalar expression), wrapped in
# statement shapes at random depth. The same shapes around a harmless core must run.
def _table_cores(secret: Path, port: int) -> list[str]:
    return [
        f"file('{secret}', 'TSV', 'a String, b String')",
        f"FiLe('{secret}', 'TSV', 'a String, b String')",
        f"url('http://127.0.0.1:{port}/n', 'TSV', 'a String, b String')",
        f"s3('http://127.0.0.1:{port}/b/k', 'TSV', 'a String, b String')",
        f"remote('127.0.0.1:{port}', system.one)",
        "executable('true', 'TSV', 'a String')",
        "input('a String')",
        "dictionary('beacon.no_such_dictionary')",
    ]


def _scalar_cores(secret: Path) -> list[str]:
    return [f"file('{secret}')", f"FILE('{secret}')", "dictGetString('beacon.no_such_dictionary', 'x', toUInt64(1))"]


TABLE_SHAPES = [
    "SELECT * FROM {t}",
    "SELECT * FROM (SELECT * FROM {t})",
    "SELECT * FROM system.one AS o JOIN {t} AS j ON 1",
    "WITH w AS (SELECT * FROM {t}) SELECT * FROM w",
    "SELECT 1 UNION ALL SELECT count() FROM {t}",
    "SELECT * FROM view(SELECT * FROM {t})",
    "SELECT 1 AS x WHERE x IN (SELECT count() FROM {t})",
    "SELECT (SELECT count() FROM {t}) AS c",
    "SELECT 1 INTERSECT SELECT count() FROM {t}",
]
EXPRESSION_SHAPES = [
    "toString(length({e}))",
    "arrayStringConcat(arrayMap(x -> {e}, [1]))",
    "if(1, {e}, 'z')",
    "CAST({e} AS String)",
    "(SELECT {e})",
    "concat('a', {e})",
]
STATEMENT_SHAPES = [
    "DESCRIBE TABLE {t}",
    "EXPLAIN SELECT * FROM {t}",
    "EXPLAIN SYNTAX SELECT * FROM {t}",
    "SELECT * FROM {t} LIMIT 1",
]


def _statements(table_core: st.SearchStrategy[str], scalar_core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    expressions = st.recursive(
        scalar_core, lambda inner: st.builds(str.format, st.sampled_from(EXPRESSION_SHAPES), e=inner), max_leaves=4
    )
    tables = st.recursive(
        st.one_of(table_core, expressions.map(lambda e: f"(SELECT {e} AS v)")),
        lambda inner: st.builds(lambda shape, t: f"({shape.format(t=t)})", st.sampled_from(TABLE_SHAPES), inner),
        max_leaves=4,
    )
    return st.one_of(
        st.builds(str.format, st.sampled_from(TABLE_SHAPES + STATEMENT_SHAPES), t=tables),
        expressions.map(lambda e: f"SELECT {e}"),
    )


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_nestings_are_refused_and_reach_nothing(store, data, secret_file, tripwire, tmp_path_factory):
    statement = data.draw(
        _statements(
            st.sampled_from(_table_cores(secret_file, tripwire.port)), st.sampled_from(_scalar_cores(secret_file))
        )
    )
    with pytest.raises(ReadOnlyRefusal):
        store.read_only_query(statement, "TabSeparated")
    assert tripwire.hits == 0


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_same_nestings_around_a_harmless_core_run(store, data):
    statement = data.draw(_statements(st.just("numbers(2)"), st.just("toString(7)")))
    store.read_only_query(statement, "TabSeparated")


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(statement=st.sampled_from(TABLE_SHAPES), path=st.sampled_from(["TRUNCATE", "APPEND", ""]))
def test_into_outfile_after_any_shape_is_refused(store, statement, path, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "fuzz-outfile.tsv"
    sql = f"{statement.format(t='numbers(1)')} INTO OUTFILE '{out}' {path}"
    with pytest.raises(ReadOnlyRefusal, match="INTO OUTFILE"):
        store.read_only_query(sql, "TabSeparated")
    assert not out.exists()
