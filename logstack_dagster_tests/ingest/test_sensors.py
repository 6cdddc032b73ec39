"""The ingest sensor against the real broker and a real lake on a test instance."""

import json

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SkipReason, build_sensor_context

from logstack_dagster.definitions import build_defs, build_resources
from logstack_dagster.ingest import topic
from logstack_dagster.ingest.sensors import raw_topic_sensor
from logstack_dagster.materialize import run_ingest

pytestmark = pytest.mark.integration

LINE = b'203.0.113.9 - - [22/Jan/2019:03:56:14 +0330] "GET / HTTP/1.1" 200 5 "-" "x"'


def _tick(settings, instance, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor,
                                   resources=build_resources(settings))
    return raw_topic_sensor(context)


def test_sensor_requests_one_run_keyed_by_offsets_then_waits_for_new_data(settings, cluster):
    topic.ensure_topic(cluster, settings.topic, 2)
    topic.produce(cluster, settings.topic, [LINE] * 50, 2)
    with DagsterInstance.ephemeral() as instance:
        first = _tick(settings, instance)
        assert len(first.run_requests) == 1
        key = first.run_requests[0].run_key
        assert settings.topic in key
        # The same offsets give the same run key, so Dagster never launches it twice.
        assert _tick(settings, instance, first.cursor).run_requests[0].run_key == key
        assert json.loads(first.cursor)["end_offsets"]

        run_ingest(instance, settings)
        idle = _tick(settings, instance, first.cursor)
        assert isinstance(idle, SkipReason)
        assert "nothing new" in idle.skip_message

        topic.produce(cluster, settings.topic, [LINE] * 3, 2)
        again = _tick(settings, instance, first.cursor)
        assert again.run_requests[0].run_key != key


def test_a_run_killed_mid_way_is_followed_by_one_for_the_rest(settings, cluster, tmp_path):
    """A failed ingest run had used up the key of the end offsets: the rest of the topic
    waited until new records changed them."""
    import signal
    import subprocess
    import sys
    import time

    from logstack_dagster.lake.layout import Lake
    from logstack_dagster.lake.manifest import Manifest
    from logstack_dagster.sample.generate import write_log
    from logstack_dagster_tests.conftest import settings_env

    log = tmp_path / "sample.log"
    write_log(log, 300_000, seed=8)
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, 2)
    manifest = Manifest(Lake.open(settings.lake), topic.topic_metadata(cluster,
                                                                       settings.topic)[0],
                        settings.topic)
    with DagsterInstance.ephemeral() as instance:
        first = _tick(settings, instance)
        run = subprocess.Popen([sys.executable, "-m", "logstack_dagster.streaming.run",
                                "--epoch-seconds", "0.2", "--commit-seconds", "0"],
                               env=settings_env(settings), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (not list(manifest.commits()) and run.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait()
        committed = sum(c.records for c in manifest.commits())
        assert 0 < committed < produced

        rest = _tick(settings, instance, first.cursor)

        assert json.loads(rest.cursor)["end_offsets"] == json.loads(first.cursor)["end_offsets"]
        assert len(rest.run_requests) == 1
        assert rest.run_requests[0].run_key != first.run_requests[0].run_key


def test_work_whose_runs_failed_is_tried_three_times_in_all(settings, cluster):
    """A run that failed without committing anything left the same key, and so nothing
    was launched until new records came."""
    from logstack_dagster.ingest.sensors import ATTEMPTS

    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, [LINE] * 5, 1)
    job = build_defs(settings).resolve_job_def("ingest_job")
    with DagsterInstance.ephemeral() as instance:
        keys = []
        for _ in range(ATTEMPTS):
            request = _tick(settings, instance).run_requests[0]
            keys.append(request.run_key)
            instance.create_run_for_job(job, status=DagsterRunStatus.FAILURE,
                                        tags=request.tags)

        given_up = _tick(settings, instance)

        assert len(set(keys)) == ATTEMPTS
        assert keys[1] == f"{keys[0]} (attempt 2)"
        assert isinstance(given_up, SkipReason)
        assert f"{ATTEMPTS} ingest runs of {keys[0]} failed" in given_up.skip_message

        # New records are new work.
        topic.produce(cluster, settings.topic, [LINE] * 2, 1)
        assert _tick(settings, instance).run_requests[0].run_key not in keys


def test_sensor_skips_while_an_ingest_run_is_in_progress(settings, cluster):
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, [LINE] * 5, 1)
    with DagsterInstance.ephemeral() as instance:
        job = build_defs(settings).resolve_job_def("ingest_job")
        instance.create_run_for_job(job, status=DagsterRunStatus.STARTED)
        result = _tick(settings, instance)
        assert isinstance(result, SkipReason)
        assert "still in progress" in result.skip_message


def test_sensor_skips_with_the_address_when_the_broker_is_down(settings):
    from dataclasses import replace

    down = replace(settings, brokers="127.0.0.1:9")
    with DagsterInstance.ephemeral() as instance:
        result = _tick(down, instance)
        assert isinstance(result, SkipReason)
        assert "127.0.0.1:9" in result.skip_message
