"""`logstack requeue`: quarantined lines parsed again after a format fix, none counted twice."""

import subprocess
import sys

import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.lake.duck import connect
from logstack_dagster.lake.layout import Lake
from logstack_dagster.sample.generate import generate_lines
from logstack_dagster_tests.conftest import settings_env

pytestmark = pytest.mark.integration

LOGSTACK = [sys.executable, "-m", "logstack_dagster.cli"]
# Lines with ISO-8601 times, which the `combined` format rejects and `combined_iso` reads.
ISO = ('203.0.113.{n} - - 2019-01-22T01:0{m}:00+00:00 "GET /iso/{n} HTTP/1.1" 200 {n} '
       '"-" "curl/8.0"')


def _logstack(settings, *args):
    result = subprocess.run([*LOGSTACK, *args], env=settings_env(settings),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _counts(settings):
    conn = connect(Lake.open(settings.lake), None)
    return conn.execute("""
        SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM quarantine),
               (SELECT count(*) FROM (SELECT topic, "partition", "offset" FROM requests
                                      UNION SELECT topic, "partition", "offset"
                                      FROM quarantine))
    """).fetchone()


def test_requeue_with_the_right_format_moves_lines_once(settings, cluster):
    combined = [line.rstrip(b"\n") for line in generate_lines(400, seed=5)]
    iso = [ISO.format(n=n, m=n % 10).encode() for n in range(1, 31)]
    lines = combined[:200] + iso + combined[200:]
    topic.ensure_topic(cluster, settings.topic, 2)
    topic.produce(cluster, settings.topic, lines, 2)
    _logstack(settings, "flow", "--format", "combined")
    rows, quarantined, distinct = _counts(settings)
    assert rows + quarantined == distinct == len(lines)
    assert quarantined >= len(iso)

    dry = _logstack(settings, "requeue", "--format", "combined_iso", "--dry-run")
    assert f"would parse {len(iso)}" in dry
    assert _counts(settings) == (rows, quarantined, distinct)

    out = _logstack(settings, "requeue", "--format", "combined_iso", "--no-metrics")
    assert f"parsed {len(iso)}," in out
    assert _counts(settings) == (rows + len(iso), quarantined - len(iso), distinct)
    conn = connect(Lake.open(settings.lake), None)
    assert conn.execute("SELECT count(*) FROM requests WHERE path LIKE '/iso/%'"
                        ).fetchone()[0] == len(iso)

    # Again: nothing left to parse with this format, nothing written twice.
    again = _logstack(settings, "requeue", "--format", "combined_iso", "--no-metrics")
    assert "parsed 0," in again
    assert _counts(settings) == (rows + len(iso), quarantined - len(iso), distinct)


def test_requeue_rebuilds_the_metrics_of_the_hours_it_changes(settings, cluster):
    lines = [ISO.format(n=n, m=n % 10).encode() for n in range(1, 11)]
    lines += [line.rstrip(b"\n") for line in generate_lines(50, seed=8)]
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, lines, 1)
    _logstack(settings, "flow", "--format", "combined")
    # A sixth of the lines failed to parse: the blocking check stops the metrics.
    failed = subprocess.run([*LOGSTACK, "materialize"], env=settings_env(settings),
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "parse_failure_share" in failed.stderr.splitlines()[-1]

    out = _logstack(settings, "requeue", "--format", "combined_iso")
    assert "rebuilt the metrics" in out

    conn = connect(Lake.open(settings.lake), settings.duckdb_path)
    totals = conn.execute(
        "SELECT sum(requests), sum(quarantined) FROM hourly_traffic").fetchone()
    assert totals == _counts(settings)[:2]
    assert totals[0] + totals[1] == len(lines)


def test_a_reason_no_quarantined_line_has_is_named_with_those_there_are(settings, cluster):
    iso = [ISO.format(n=n, m=n % 10).encode() for n in range(1, 11)]
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, iso, 1)
    _logstack(settings, "flow", "--format", "combined")
    conn = connect(Lake.open(settings.lake), None)
    [(reason,)] = conn.execute("SELECT DISTINCT reason FROM quarantine").fetchall()

    result = subprocess.run([*LOGSTACK, "requeue", "--format", "combined_iso", "--no-metrics",
                             "--reason", "NOPE", "--reason", reason],
                            env=settings_env(settings), capture_output=True, text=True,
                            timeout=300)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (f"logstack requeue: --reason 'NOPE': no quarantined line "
                                     f"has it; their reasons are {reason}")
    assert "parsed 10," in result.stdout
