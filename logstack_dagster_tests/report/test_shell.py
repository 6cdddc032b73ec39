"""`logstack query` without SQL: the DuckDB shell over the lake views and metric tables."""

import io

import pytest

from logstack_dagster.lake.duck import connect
from logstack_dagster.lake.layout import Lake
from logstack_dagster.report.shell import Shell, interact, statement_complete


@pytest.mark.parametrize(("text", "complete"), [
    ("SELECT 1;", True),
    ("SELECT 1", False),
    ("SELECT ';'", False),
    ("SELECT 'it''s';  ", True),
    ("SELECT 1; -- done", True),
    ("SELECT 1 -- not yet;", False),
    ("SELECT /* ; */ 1", False),
    ('SELECT "a;b" FROM t;', True),
])
def test_a_statement_ends_at_a_semicolon_outside_quotes_and_comments(text, complete):
    assert statement_complete(text) is complete


@pytest.fixture
def shell(lake_settings):
    conn = connect(Lake.open(lake_settings.lake), lake_settings.duckdb_path)
    yield Shell(conn, io.StringIO(), io.StringIO())
    conn.close()


def _lines(*lines):
    queue = list(lines)

    def read(_prompt):
        if not queue:
            raise EOFError
        return queue.pop(0)

    return read


def test_statements_span_lines_and_print_tables(shell):
    code = interact(shell, _lines("SELECT count(*) AS n", "FROM requests;",
                                  "SELECT sum(requests) AS total FROM hourly_traffic; "
                                  "SELECT 7 AS x;"), prompt=False)

    out = [line.strip() for line in shell.out.getvalue().splitlines()]
    assert code == 0
    assert out[:3] == ["n", "--", "11"]
    assert "total" in out and "x" in out and out[-1] == "(1 row)"


def test_metric_tables_are_read_only_and_errors_do_not_end_the_shell(shell):
    code = interact(shell, _lines("DELETE FROM hourly_traffic;", "SELECT 1 AS one;"),
                    prompt=False)

    assert code == 1 and shell.errors == 1
    assert "read-only" in shell.err.getvalue() and "--write" in shell.err.getvalue()
    assert "one" in shell.out.getvalue()


def test_dot_commands(shell):
    assert shell.feed(".tables")
    assert shell.feed(".schema hourly_traffic")
    assert shell.feed(".nonsense")
    assert shell.feed(".quit") is False

    out = shell.out.getvalue()
    assert "hourly_top_paths" in out and "requests" in out and "quarantine" in out
    assert "unique_ips" in out
    assert "unknown command '.nonsense'" in shell.err.getvalue()


def test_input_ending_without_semicolon_still_runs(shell):
    interact(shell, _lines("SELECT 42 AS answer"), prompt=False)

    assert "42" in shell.out.getvalue()


def test_rows_are_capped(shell):
    shell.max_rows = 3
    shell.feed("SELECT * FROM range(10);")

    assert "only the first 3 shown" in shell.out.getvalue()
