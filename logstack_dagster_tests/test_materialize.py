"""`logstack materialize` with hours a check fails and hours outside the partitions: the
other hours get their tables, and what was left out is named in one line each."""

import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.ingest.topic import resolve_cluster, topic_metadata
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.materialize import (
    lake_hours,
    materialize_hours,
    open_instance,
    run_ingest,
)
from logstack_dagster_tests.conftest import settings_env

pytestmark = pytest.mark.integration

LOGSTACK = [sys.executable, "-m", "logstack_dagster.cli"]


def _line(day: str, hour: int, minute: int, status: int = 200) -> bytes:
    return (f'203.0.113.9 - - [{day}:{hour:02d}:{minute:02d}:00 +0000] '
            f'"GET /p{minute} HTTP/1.1" {status} 5 "-" "curl/8.4.0"').encode()


def _hours(day: str, hours: range) -> list[bytes]:
    return [_line(day, h, m) for h in hours for m in range(0, 60, 6)]


def _materialize(settings):
    return subprocess.run([*LOGSTACK, "materialize"], env=settings_env(settings),
                          capture_output=True, text=True, timeout=300, check=False)


def _built_hours(settings, table: str) -> list[datetime]:
    conn = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return [h for (h,) in conn.execute(f"SELECT DISTINCT hour FROM {table} ORDER BY 1")
                .fetchall()]
    finally:
        conn.close()


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_failing_hour_is_held_back_and_every_other_hour_is_built(settings, cluster):
    # Three hours of 2019 with a burst of garbage in the middle one (as a TLS probe on
    # the HTTP port leaves), and an hour of 2015: two stretches of hours.
    lines = (_hours("22/Jan/2019", range(0, 2)) + [b"\x16\x03\x01 garbage"] * 6
             + _hours("22/Jan/2019", range(2, 3)) + _hours("17/May/2015", range(10, 11)))
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, lines, 1)
    run_ingest(open_instance(settings.dagster_home), settings)

    result = _materialize(settings)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    held = [line for line in result.stderr.splitlines() if "held back 2019" in line]
    assert held == ["logstack materialize: held back 2019-01-22 01:00 UTC: 37.5% of 16 "
                    "lines failed to parse (check parse_failure_share)"]
    assert "parse_failure_share" in result.stderr.splitlines()[-1]
    # The 2019 stretch is split around its failing hour; the 2015 one runs too.
    assert "in 3 runs" in result.stdout
    assert _built_hours(settings, "hourly_status_codes") == [
        _utc(2015, 5, 17, 10), _utc(2019, 1, 22, 0), _utc(2019, 1, 22, 2)]
    assert _built_hours(settings, "hourly_traffic") == [
        _utc(2015, 5, 17, 10), *(_utc(2019, 1, 22, h) for h in range(3))]


def test_hours_outside_the_partitions_are_skipped_and_named(settings, cluster):
    lines = ([b'198.51.100.7 - - [10/Oct/1969:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"']
             + _hours("22/Jan/2019", range(5, 8))
             + [b'198.51.100.7 - - [10/Oct/2262:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" '
                b'"x"'] * 2)
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, lines, 1)
    run_ingest(open_instance(settings.dagster_home), settings)

    result = _materialize(settings)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    said = result.stderr.splitlines()
    assert any("skipped 1 hour (1 line, 1969-10-10 10:00 UTC) before LOGSTACK_FIRST_HOUR "
               "(1995-01-01-00:00)" in line for line in said), said
    assert any("skipped 1 hour (2 lines, 2262-10-10 10:00 UTC) from " in line
               and "an hour is built once it has ended" in line for line in said), said
    # Three good consecutive hours: one run, not one per hour.
    assert result.stdout.strip() == "materialized the hourly metrics in 1 run"
    assert _built_hours(settings, "hourly_top_paths") == [
        _utc(2019, 1, 22, h) for h in range(5, 8)]


def test_outcome_keeps_one_run_per_stretch(settings, cluster):
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, _hours("22/Jan/2019", range(0, 4)), 1)
    instance = open_instance(settings.dagster_home)
    run_ingest(instance, settings)

    cluster_id = topic_metadata(resolve_cluster(settings), settings.topic)[0]
    hours = lake_hours(list(Manifest(Lake.open(settings.lake), cluster_id,
                                     settings.topic).commits()))
    outcome = materialize_hours(instance, settings, hours)

    assert outcome.ok and len(outcome.run_ids) == 1
    assert not outcome.before_first and not outcome.after_last
