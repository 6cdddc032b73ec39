"""The main job on the real sample: broker, dataflow and Dagster jobs, counted exactly."""

import duckdb
from dagster import AssetKey
import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.lake.duck import connect
from logstack_dagster.lake.layout import Lake
from logstack_dagster_tests.conftest import count_lines

pytestmark = pytest.mark.integration


def test_real_sample_through_dagster_counts_every_line(settings, cluster, shared_data):
    from logstack_dagster.demo import materialize_lake
    from logstack_dagster.materialize import open_instance, run_ingest

    path = shared_data / "first1000.log"
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
    produced = topic.produce_file(cluster, settings.topic, path, partitions)
    instance = open_instance(settings.dagster_home)

    summary = run_ingest(instance, settings)
    runs = materialize_lake(settings, instance)

    assert produced == count_lines(path)
    assert summary["records"] == produced
    assert summary["rows"] + summary["quarantined"] == produced
    lake = connect(Lake.open(settings.lake), settings.duckdb_path)
    rows, quarantined = lake.execute(
        "SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM quarantine)"
    ).fetchone()
    assert (rows, quarantined) == (summary["rows"], summary["quarantined"])
    distinct = lake.execute(
        'SELECT count(*) FROM (SELECT DISTINCT "partition", "offset" FROM requests)'
    ).fetchone()
    assert distinct[0] == rows

    # The metric tables agree with the lake, hour by hour.
    per_hour = dict(
        lake.execute("""
        SELECT date_trunc('hour', event_time), count(*) FROM requests GROUP BY 1
    """).fetchall()
    )
    traffic = dict(lake.execute("SELECT hour, requests FROM hourly_traffic").fetchall())
    assert traffic == per_hour
    status_total = lake.execute("SELECT sum(requests) FROM hourly_status_codes").fetchone()[0]
    country_total = lake.execute("SELECT sum(requests) FROM hourly_countries").fetchone()[0]
    assert status_total == country_total == rows
    assert len(runs) >= 1

    # The runs are in the instance: the lake's hours and the metrics were materialized.
    lake_events = instance.fetch_materializations(AssetKey("requests_lake"), limit=100).records
    assert {e.partition_key for e in lake_events} == {
        h.strftime("%Y-%m-%d-%H:00") for h in per_hour
    }
    # Each metric materialization carries its totals, for the UI to plot over partitions.
    traffic_events = instance.fetch_materializations(AssetKey("hourly_traffic"), limit=100)
    plotted = 0
    for record in traffic_events.records:
        metadata = record.asset_materialization.metadata
        assert "preview" in metadata
        plotted += metadata["total_requests"].value
    assert plotted == rows


def test_rematerializing_an_hour_replaces_it(settings, cluster, shared_data):
    from logstack_dagster.demo import materialize_lake
    from logstack_dagster.materialize import open_instance, run_ingest

    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce_file(cluster, settings.topic, shared_data / "elastic-apache-2015.log", 1)
    instance = open_instance(settings.dagster_home)
    run_ingest(instance, settings)
    materialize_lake(settings, instance)

    def snapshot():
        conn = duckdb.connect(str(settings.duckdb_path), read_only=True)
        try:
            return {
                t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("hourly_traffic", "hourly_status_codes", "hourly_offenders")
            }
        finally:
            conn.close()

    before = snapshot()
    materialize_lake(settings, instance)
    assert snapshot() == before
    assert sum(r[1] for r in before["hourly_traffic"]) + sum(
        r[5] for r in before["hourly_traffic"]
    ) == count_lines(shared_data / "elastic-apache-2015.log")
