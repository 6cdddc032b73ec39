"""`logstack report` and `logstack query` as a user runs them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from logstack_dagster.report.run import load_answers

LOGSTACK = str(Path(sys.executable).parent / "logstack")


def _run(settings, *args, stdin=None, lake=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGSTACK_", "KAFKA_"))}
    env["LOGSTACK_HOME"] = str(settings.home)
    if lake:
        env["LOGSTACK_LAKE"] = lake
    return subprocess.run([LOGSTACK, *args], capture_output=True, text=True, input=stdin,
                          timeout=120, env=env, check=False)


def _one_line_error(result, *expected):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "error:" in lines[-1]
    for text in expected:
        assert text in lines[-1]


def test_json_is_the_answers(lake_settings):
    result = _run(lake_settings, "report", "--json", "--no-owners", "--from", "2019-01-22T11")

    data = json.loads(result.stdout)
    assert data["requests"] == 6 and data["hours"] == 1
    assert data["filter"]["from"] == "2019-01-22T11:00:00Z"
    from logstack_dagster.report.filters import ReportFilter, parse_from

    expected = load_answers(lake_settings, ReportFilter(start=parse_from("2019-01-22T11")))
    assert data == expected.to_json()


def test_text_report_with_filters(lake_settings):
    result = _run(lake_settings, "report", "--no-owners", "--vhost", "api.example.com",
                  "--humans")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 requests")
    assert "vhost api.example.com, humans only" in result.stdout


def test_bot_flags_need_the_bot_columns(plain_lake_settings):
    _one_line_error(_run(plain_lake_settings, "report", "--bots"), "--bots", "is_bot")


def test_bad_time_and_empty_range_are_usage_errors(lake_settings):
    _one_line_error(_run(lake_settings, "report", "--to", "soon"), "--to", "'soon'")
    _one_line_error(_run(lake_settings, "report", "--from", "2019-01-23", "--to",
                         "2019-01-22"), "--from 2019-01-23 00:00 is after --to")


def test_query_is_read_only_unless_write(lake_settings, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(lake_settings.duckdb_path, home / "metrics.duckdb")
    settings = type(lake_settings)(home=home)

    refused = _run(settings, "query", "DELETE FROM hourly_traffic", lake=lake_settings.lake)
    _one_line_error(refused, "--write")

    deleted = _run(settings, "query", "--write", "DELETE FROM hourly_traffic WHERE hour < "
                   "'2019-01-22 11:00+00'", lake=lake_settings.lake)
    assert deleted.returncode == 0, deleted.stderr
    left = _run(settings, "query", "--json", "SELECT hour FROM hourly_traffic",
                lake=lake_settings.lake)
    assert [json.loads(line) for line in left.stdout.splitlines()] == [
        {"hour": "2019-01-22T11:00:00Z"}]


def test_query_reads_statements_from_a_pipe(lake_settings):
    result = _run(lake_settings, "query", stdin="SELECT count(*) AS n FROM requests;\n"
                  "SELECT count(*) AS q FROM quarantine;\n")

    assert result.returncode == 0, result.stderr
    assert [line.strip() for line in result.stdout.splitlines()] == [
        "n", "--", "11", "(1 row)", "q", "-", "2", "(1 row)"]

    failed = _run(lake_settings, "query", stdin="SELECT nonsense;\n")
    assert failed.returncode == 1 and "nonsense" in failed.stderr


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_query_of_no_statement_prints_nothing(lake_settings, sql):
    result = _run(lake_settings, "query", sql)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
