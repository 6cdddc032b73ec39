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
