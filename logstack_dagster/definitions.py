"""Every Dagster definition of logstack, gathered; nothing is defined here.

The resources take their values from the environment (`settings.py`).
"""

from dagster import (
    Definitions,
    PipesSubprocessClient,
    in_process_executor,
    multiprocess_executor,
)
from dagster_duckdb import DuckDBResource

from logstack_dagster.alerts import AlertResource, run_failure_alert_sensor
from logstack_dagster.ingest.assets import raw_topic
from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.ingest.sensors import raw_topic_sensor
from logstack_dagster.lake.assets import ingest_job, requests_lake
from logstack_dagster.lake.checks import ingest_reconciliation, newest_event_freshness
from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.lake.schedules import compact_lake_job, compact_lake_schedule
from logstack_dagster.metrics.assets import metric_assets
from logstack_dagster.metrics.checks import metric_totals_match_lake, parse_failure_share
from logstack_dagster.metrics.schedules import hourly_metrics_job, hourly_metrics_schedule
from logstack_dagster.metrics.sensors import late_data_automation_sensor
from logstack_dagster.settings import Settings, load_settings


def build_defs(settings: Settings) -> Definitions:
    """The definitions with resources pointed at `settings`."""
    return Definitions(
        assets=[raw_topic, requests_lake, *metric_assets],
        asset_checks=[parse_failure_share, metric_totals_match_lake, ingest_reconciliation,
                      newest_event_freshness],
        jobs=[ingest_job, hourly_metrics_job, compact_lake_job],
        schedules=[hourly_metrics_schedule, compact_lake_schedule],
        sensors=[raw_topic_sensor, late_data_automation_sensor, run_failure_alert_sensor],
        resources=build_resources(settings),
        # Every metric step takes the one-slot DuckDB pool, so steps run one after
        # another anyway; one process per run saves a Python start-up per step. With
        # LOGSTACK_DAGSTER_EXECUTOR=multiprocess each step has a process of its own (the
        # run config's `execution` then sets max_concurrent); the pool still holds.
        executor=(multiprocess_executor if settings.dagster_executor == "multiprocess"
                  else in_process_executor),
    )


def build_resources(settings: Settings) -> dict:
    """The resources, keyed by the system each one speaks to."""
    return {
        "kafka": KafkaResource(
            brokers=settings.brokers or "", topic=settings.topic, home=str(settings.home)),
        "lake": LakeResource(uri=settings.lake),
        "duckdb": DuckDBResource(database=str(settings.duckdb_path)),
        "alerts": AlertResource(webhook=settings.alert_webhook or ""),
        "pipes_subprocess_client": PipesSubprocessClient(),
    }


defs = build_defs(load_settings())
