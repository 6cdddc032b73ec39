"""What a report counts when the metric tables hold less than the lake: hours not built
yet, hours a failed check held back, tables that were never built."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.metrics.tables import METRICS, TRAFFIC
from logstack_dagster.report.filters import HOUR
from logstack_dagster.report.run import load_answers
from logstack_dagster_tests.report.conftest import HOUR_A, HOUR_B

LOGSTACK = str(Path(sys.executable).parent / "logstack")


def _report(settings, lake, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGSTACK_", "KAFKA_"))}
    env.update(LOGSTACK_HOME=str(settings.home), LOGSTACK_LAKE=lake)
    return subprocess.run([LOGSTACK, "report", "--no-owners", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


@pytest.fixture
def copied(lake_settings, tmp_path):
    """Settings on the report lake with a copy of its metrics database, to cut down."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(lake_settings.duckdb_path, home / "metrics.duckdb")
    return type(lake_settings)(home=home, lake_uri=lake_settings.lake)


def _sql(settings, *statements):
    conn = duckdb.connect(str(settings.duckdb_path))
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _lines_of_hour_b(lake_sql) -> int:
    return lake_sql.execute(
        "SELECT (SELECT count(*) FROM rows WHERE event_time >= $1 AND event_time < $2) "
        "+ (SELECT count(*) FROM failures WHERE filed = $1)", [HOUR_B, HOUR_B + HOUR]
    ).fetchone()[0]


def test_only_hourly_traffic_built_reports_without_crashing(copied):
    # As after a first `logstack materialize` whose check failed in every hour.
    _sql(copied, *(f"DROP TABLE {m.name}" for m in METRICS if m is not TRAFFIC))

    result = _report(copied, copied.lake)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("11 requests and 2 quarantined lines over 2 hours")
    assert ("Counted in the hourly totals only: 2 hours whose other metric tables a failed "
            "check held back") in result.stdout
    status = result.stdout.split("Requests by status code\n")[1].splitlines()
    assert status[2] == "  (none)"


def test_a_held_back_hour_is_named_and_counted_in_the_totals(copied):
    _sql(copied, *(f"DELETE FROM {m.name} WHERE hour = '{HOUR_B.isoformat()}'"
                   for m in METRICS if m is not TRAFFIC))

    answers = load_answers(copied)

    assert answers.left_out.to_json() == {"hours": 0, "lines": 0, "held_hours": 1}
    assert answers.requests == 11
    assert sum(r["requests"] for r in answers.status_codes) == 5


def test_lake_hours_not_yet_built_are_said_and_counted_from_the_lake(copied, lake_sql):
    _sql(copied, *(f"DELETE FROM {m.name} WHERE hour = '{HOUR_B.isoformat()}'"
                   for m in METRICS))
    lines_b = _lines_of_hour_b(lake_sql)

    metrics = _report(copied, copied.lake)
    assert metrics.returncode == 0, metrics.stderr
    assert metrics.stdout.startswith("5 requests")
    assert (f"Not counted: 1 hour of the lake ({lines_b} lines) is not in the metric "
            "tables yet: run `logstack materialize`") in metrics.stdout

    # `--source lake` counts every hour of the lake, and so leaves none out.
    lake = json.loads(_report(copied, copied.lake, "--source", "lake", "--json").stdout)
    assert lake["hours"] == 2 and lake["requests"] == 11 and lake["quarantined"] == 2
    assert lake["left_out"] == {"hours": 0, "lines": 0, "held_hours": 0}
    assert "Not counted" not in _report(copied, copied.lake, "--source", "lake").stdout

    # A filter the metric tables cannot answer keeps to their hours, and says so.
    vhost = _report(copied, copied.lake, "--vhost", "www.example.com")
    assert vhost.stdout.startswith("3 requests"), vhost.stdout
    www_b = lake_sql.execute("SELECT count(*) FROM rows WHERE vhost = 'www.example.com' "
                             "AND event_time >= $1", [HOUR_B]).fetchone()[0]
    quarantined_b = lake_sql.execute("SELECT count(*) FROM failures WHERE filed = $1",
                                     [HOUR_B]).fetchone()[0]
    assert (f"Not counted: 1 hour of the lake ({www_b + quarantined_b} lines)"
            in vhost.stdout)


def test_every_hour_built_leaves_nothing_out(lake_settings):
    answers = load_answers(lake_settings)

    assert not answers.left_out
    assert answers.hours == 2 and answers.first_hour == HOUR_A


def test_a_query_the_tables_break_is_one_line(copied):
    """A metric table the report cannot read (here: one without its counts) is named in
    one line, not a traceback."""
    _sql(copied, "DROP TABLE hourly_status_codes",
         "CREATE TABLE hourly_status_codes (hour TIMESTAMPTZ, status_code INTEGER)")

    result = _report(copied, copied.lake)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the report's query of" in lines[0], lines
