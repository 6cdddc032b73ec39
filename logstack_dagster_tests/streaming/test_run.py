"""The dataflow as its own process against the real broker."""

import json
import subprocess
import sys

import pytest

from logstack_dagster.ingest import topic
from logstack_dagster_tests.conftest import count_lines, settings_env

pytestmark = pytest.mark.integration


def _flow(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "logstack_dagster.streaming.run", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_flow_catches_up_then_exits_and_resumes_where_it_stopped(settings, cluster, shared_data):
    path = shared_data / "first1000.log"
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, path, 2)

    first = _flow(settings)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.splitlines()[-1])
    assert summary["records"] == produced == count_lines(path)

    # Nothing new: a second run reads nothing; new lines: only those are read.
    second = _flow(settings)
    assert json.loads(second.stdout.splitlines()[-1])["records"] == 0
    more = shared_data / "dash-request.log"
    added = topic.produce_file(cluster, settings.topic, more, 2)
    third = _flow(settings, "--workers", "2")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout.splitlines()[-1])["records"] == added


def test_missing_topic_is_named(settings):
    result = _flow(settings)
    assert result.returncode != 0
    assert settings.topic in result.stderr


def test_flow_logs_throughput_and_lag_at_a_steady_interval(settings, cluster, tmp_path):
    from logstack_dagster.sample.generate import write_log

    log = tmp_path / "sample.log"
    write_log(log, 200_000, seed=2)
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, 2)

    run = _flow(settings, "--progress-seconds", "0.5", "--epoch-seconds", "0.5")

    assert run.returncode == 0, run.stderr
    reports = [line for line in run.stderr.splitlines() if "records/s); lag" in line]
    assert reports, run.stderr[-2000:]
    committed = [int(line.split("committed ")[1].split()[0]) for line in reports]
    assert all(0 <= n <= produced for n in committed)
    assert sum(committed) <= produced
