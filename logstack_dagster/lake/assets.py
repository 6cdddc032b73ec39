"""The Parquet lake asset and the ingest job that fills it by running the Bytewax dataflow."""


import os
import sys

from dagster import (
    AssetMaterialization,
    AssetSpec,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    PipesSubprocessClient,
    job,
    op,
)

from logstack_dagster.alerts import AlertResource
from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.lake.checks import reconciliation_evaluation
from logstack_dagster.lake.layout import ROWS
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.metrics.partitions import hourly_partitions

requests_lake = AssetSpec(
    key="requests_lake",
    group_name="lake",
    deps=["raw_topic"],
    partitions_def=hourly_partitions,
    description=(
        "Parsed, GeoIP-enriched access-log rows as hour-partitioned Parquet "
        f"(`{ROWS}/year=/month=/day=/hour=`, UTC event time), plus the quarantine of "
        "lines that did not parse. Grain: one row per topic record. Written only by "
        "`ingest_job`, which reports each hour it wrote to as a materialization of that "
        "hour's partition. Assumes every record lands once, in the rows or the quarantine."
    ),
)


@op(
    description="Run the Bytewax dataflow over the raw topic until it has caught up.",
    out=Out(dict, description="What the run committed: records, rows, quarantined, files."),
)
def ingest_topic(
    context: OpExecutionContext,
    kafka: KafkaResource,
    lake: LakeResource,
    alerts: AlertResource,
    pipes_subprocess_client: PipesSubprocessClient,
):
    env = {
        **os.environ,
        "LOGSTACK_HOME": kafka.home,
        "KAFKA_BROKERS": kafka.brokers,
        "KAFKA_TOPIC": kafka.topic,
        "LOGSTACK_LAKE": lake.uri,
    }
    # The dataflow ends with this process, however it ends: it would hold the topic's ingest
    # lock, its run already reported failed.
    command = [sys.executable, "-m", "logstack_dagster.streaming.run", "--run-id", context.run_id,
               "--parent-pid", str(os.getpid())]
    invocation = pipes_subprocess_client.run(context=context, command=command, env=env)
    summaries = invocation.get_custom_messages()
    if not summaries:
        raise RuntimeError("the dataflow finished without reporting what it wrote")
    summary = summaries[-1]

    for hour, counts in summary["hours"].items():
        yield AssetMaterialization(
            asset_key="requests_lake",
            partition=_partition_key(hour),
            metadata={
                "rows": counts["rows"],
                "quarantined": counts["quarantined"],
                "files": counts["files"],
                "bytes": MetadataValue.int(counts["bytes"]),
                "run_offsets": MetadataValue.json(summary["offsets"]),
            },
        )
    result = reconcile(lake.manifest(summary["cluster"], kafka.topic), run_id=context.run_id)
    context.log_event(reconciliation_evaluation(result, context.run_id))
    if not result.passed:
        alerts.send("logstack: an ingest run does not reconcile",
                    {"run_id": context.run_id, "problems": "; ".join(
                        [*result.mismatches, *result.gaps][:5])})

    context.log.info(
        "ingested %s records: %s rows, %s quarantined, %s files over %s hours",
        summary["records"], summary["rows"], summary["quarantined"], summary["files"],
        len(summary["hours"]),
    )
    totals = {k: summary[k] for k in ("records", "rows", "quarantined", "files", "bytes")}
    yield Output(totals, metadata=totals)


def _partition_key(iso_hour: str) -> str:
    """`2019-01-22T03:00:00Z` -> `2019-01-22-03:00`, the hourly partition key."""
    return f"{iso_hour[:10]}-{iso_hour[11:16]}"


@job(
    description="Read the raw topic into the Parquet lake (one dataflow run).",
    tags={"logstack/ingest": "true"},
)
def ingest_job():
    ingest_topic()
