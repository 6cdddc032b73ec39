"""Dagster's storage on PostgreSQL (deploy/dagster-postgres.yaml) under the demo's path,
and the DuckDB pool of the metric assets under Dagster's multi-process executor.

The server is the one `.ci/run` starts (LOGSTACK_TEST_PG_URL) or, without it, one the
session starts itself (see postgres.py); each test has a database of its own on it.
"""

from __future__ import annotations

import duckdb
import psycopg2
import pytest
from dagster import (
    AssetSelection,
    DagsterEventType,
    Definitions,
    define_asset_job,
    execute_job,
    multiprocess_executor,
    reconstructable,
)

from logstack_dagster.demo import materialize_lake
from logstack_dagster.ingest import topic
from logstack_dagster.lake.layout import Lake, hour_key
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.materialize import lake_hours, run_ingest
from logstack_dagster.metrics.assets import DUCKDB_POOL
from logstack_dagster.metrics.tables import TRAFFIC
from logstack_dagster.settings import load_settings
from logstack_dagster_tests.conftest import count_lines, settings_env
from logstack_dagster_tests.postgres import libpq_url

pytestmark = pytest.mark.integration

MULTIPROCESS_JOB = "hourly_metrics_multiprocess_job"
# hourly_traffic, its two checks and three of the tables that wait for them: enough steps
# to run side by side, few enough that a Python start-up per step stays affordable.
MULTIPROCESS_TABLES = [TRAFFIC.name, "hourly_status_codes", "hourly_countries",
                       "hourly_top_paths"]


def multiprocess_metrics_job():
    """Metric assets with the settings of the environment, whose executor the test sets
    to the multi-process one: every step process rebuilds the job from here."""
    from logstack_dagster.definitions import build_defs

    job = define_asset_job(MULTIPROCESS_JOB,
                           selection=AssetSelection.assets(*MULTIPROCESS_TABLES))
    defs = Definitions.merge(build_defs(load_settings()), Definitions(jobs=[job]))
    return defs.resolve_job_def(MULTIPROCESS_JOB)


def _ingest_first1000(settings, cluster, shared_data, instance) -> int:
    """The real sample produced and ingested through Dagster; returns its line count."""
    log = shared_data / "first1000.log"
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
    topic.produce_file(cluster, settings.topic, log, partitions)
    assert run_ingest(instance, settings)["records"] == count_lines(log)
    return count_lines(log)


def _traffic_totals(settings) -> tuple[int, int]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as metrics:
        return metrics.execute(
            f"SELECT sum(requests), sum(quarantined) FROM {TRAFFIC.name}").fetchone()


def test_the_demo_path_keeps_runs_and_materializations_in_postgres(
        postgres_instance, postgres_url, settings, cluster, shared_data):
    # postgres_instance has checked that its run and event storage are PostgreSQL's.
    instance = postgres_instance
    lines = _ingest_first1000(settings, cluster, shared_data, instance)
    metric_runs = materialize_lake(settings, instance)

    # Read straight from the database, not through Dagster.
    with psycopg2.connect(libpq_url(postgres_url)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp")
        runs = cursor.fetchall()
        cursor.execute(
            "SELECT DISTINCT partition FROM event_logs WHERE asset_key = %s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY 1",
            ['["hourly_traffic"]'])
        traffic_partitions = [p for p, in cursor.fetchall()]
    conn.close()
    assert runs == [("ingest_job", "SUCCESS")] + [("hourly_metrics_job", "SUCCESS")] * len(
        metric_runs)
    assert traffic_partitions == ["2019-01-22-00:00", "2019-01-22-04:00"]

    requests, quarantined = _traffic_totals(settings)
    assert requests + quarantined == lines


def test_the_duckdb_pool_keeps_metric_steps_apart_under_the_multiprocess_executor(
        postgres_instance, settings, cluster, shared_data, monkeypatch):
    instance = postgres_instance
    lines = _ingest_first1000(settings, cluster, shared_data, instance)
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    hours = lake_hours(list(Manifest(Lake.open(settings.lake), cluster_id,
                                     settings.topic).commits()))
    # The step processes build their settings from the environment, as a code location does.
    for name, value in settings_env(settings).items():
        if name.startswith(("LOGSTACK_", "KAFKA_")):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOGSTACK_DAGSTER_EXECUTOR", "multiprocess")
    assert multiprocess_metrics_job().executor_def is multiprocess_executor

    with execute_job(
        reconstructable(multiprocess_metrics_job), instance,
        run_config={"execution": {"config": {
            "max_concurrent": 4, "start_method": {"spawn": {}}}}},
        tags={"dagster/asset_partition_range_start": hour_key(hours[0]),
              "dagster/asset_partition_range_end": hour_key(hours[-1])},
    ) as result:
        assert result.success
        run_id = result.run_id

    steps = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START,
                                               DagsterEventType.STEP_SUCCESS})
    starts = {e.step_key: e.timestamp for e in steps
              if e.dagster_event_type == DagsterEventType.STEP_START}
    ends = {e.step_key: e.timestamp for e in steps
            if e.dagster_event_type == DagsterEventType.STEP_SUCCESS}
    checks = {f"{TRAFFIC.name}_parse_failure_share", f"{TRAFFIC.name}_metric_totals_match_lake"}
    writers = set(MULTIPROCESS_TABLES) | checks
    assert starts.keys() == ends.keys() == writers

    # The tables and the checks after hourly_traffic could run side by side; the pool of
    # one makes each step that opens the DuckDB file wait for the one before it.
    spans = sorted((starts[step], ends[step], step) for step in writers)
    for (_, end, before), (start, _, after) in zip(spans, spans[1:]):
        assert start >= end, f"{after} started before {before} had finished"
    blocked = [e for e in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
               if f"blocked by limit for pool {DUCKDB_POOL}" in (e.message or "")]
    assert blocked, "no step ever waited for the duckdb pool"
    assert instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).slot_count == 1

    requests, quarantined = _traffic_totals(settings)
    assert requests + quarantined == lines
