"""Late rows for an hour that has metrics rebuild that hour's metrics, and no other hour's."""

import pytest
from dagster import AssetKey, evaluate_automation_conditions

from logstack_dagster.definitions import build_defs
from logstack_dagster.ingest import topic
from logstack_dagster.materialize import open_instance, run_ingest
from logstack_dagster.metrics.tables import METRICS

pytestmark = pytest.mark.integration

# Two hours of the same day (UTC), and a line that arrives late for the first of them.
EARLY = b'203.0.113.9 - - [22/Jan/2019:00:10:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "x"'
LATER = b'203.0.113.9 - - [22/Jan/2019:01:10:00 +0000] "GET /b HTTP/1.1" 404 5 "-" "x"'
LATE = b'198.51.100.4 - - [22/Jan/2019:00:59:59 +0000] "GET /c HTTP/1.1" 200 9 "-" "y"'


def test_late_rows_rebuild_only_their_hour(settings, cluster):
    from logstack_dagster.demo import materialize_lake

    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, [EARLY] * 5 + [LATER] * 5, 1)
    instance = open_instance(settings.dagster_home)
    defs = build_defs(settings)
    run_ingest(instance, settings)
    materialize_lake(settings, instance)

    settled = evaluate_automation_conditions(defs, instance)
    settled = evaluate_automation_conditions(defs, instance, cursor=settled.cursor)
    assert settled.total_requested == 0

    topic.produce(cluster, settings.topic, [LATE], 1)
    run_ingest(instance, settings)
    result = evaluate_automation_conditions(defs, instance, cursor=settled.cursor)

    traffic = AssetKey("hourly_traffic")
    assert result.get_requested_partitions(traffic) == {"2019-01-22-00:00"}
    for metric in METRICS:
        assert result.get_requested_partitions(AssetKey(metric.name)) <= {"2019-01-22-00:00"}
