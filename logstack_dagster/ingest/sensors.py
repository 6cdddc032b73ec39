"""The sensor that launches an ingest run when the raw topic has records not yet ingested."""


import json

from dagster import (
    AssetObservation,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.ingest.topic import BrokerUnreachable
from logstack_dagster.lake.assets import ingest_job
from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.settings import load_settings

ATTEMPTS = 3  # runs of the same work before the sensor leaves it to a person

_ACTIVE = [
    DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    job=ingest_job,
    # LOGSTACK_SENSOR_INTERVAL_SECONDS; tests lower it to keep a live server quick.
    minimum_interval_seconds=load_settings().sensor_interval_seconds,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Compares the raw topic's end offsets (broker metadata) with the offsets the "
        "lake's manifest holds, and launches one ingest run when the topic is ahead. "
        "The run key is made of both, so a tick never launches the same work twice, a "
        "run that failed after committing part of it is followed by one for the rest, "
        f"work whose runs failed without committing is tried {ATTEMPTS} times in all, and "
        "no run is launched while another ingest is queued or running."
    ),
)
def raw_topic_sensor(context: SensorEvaluationContext, kafka: KafkaResource,
                     lake: LakeResource):
    try:
        ends = kafka.end_offsets()
        cluster_id = kafka.cluster_id()
    except BrokerUnreachable as exc:
        return SkipReason(str(exc))

    ingested = lake.manifest(cluster_id, kafka.topic).next_offsets()
    behind = {p: end for p, end in ends.items() if end > ingested.get(p, 0)}
    if not behind:
        return SkipReason(f"topic {kafka.topic!r} has nothing new")

    active = context.instance.get_run_records(
        RunsFilter(job_name=ingest_job.name, statuses=_ACTIVE), limit=1)
    if active:
        return SkipReason(f"ingest run {active[0].dagster_run.run_id} is still in progress")

    # With the end offsets alone, a run that failed mid-way used up its key: the rest of
    # its work waited for new records to change the ends.
    key = (f"{cluster_id}/{kafka.topic}/"
           + ",".join(f"{p}:{ingested.get(p, 0)}" for p in sorted(ends)) + " to "
           + ",".join(f"{p}:{e}" for p, e in sorted(ends.items())))
    # A run that failed without committing anything (a broker down at its start) leaves
    # the same key: try it again, a few times, rather than wait for new records.
    failed = len(context.instance.get_run_records(RunsFilter(
        job_name=ingest_job.name, statuses=[DagsterRunStatus.FAILURE],
        tags={"logstack/offsets": key}), limit=ATTEMPTS))
    if failed >= ATTEMPTS:
        return SkipReason(f"{failed} ingest runs of {key} failed; launch ingest_job once "
                          "their cause is fixed, or wait for new records")
    run_key = key if not failed else f"{key} (attempt {failed + 1})"
    # What the tick saw, as an observation of the topic: the UI then shows its end
    # offsets and lag beside the run that ingests them.
    observed = AssetObservation(asset_key="raw_topic", metadata={
        "end_offsets": MetadataValue.json({str(p): o for p, o in ends.items()}),
        "ingested_offsets": MetadataValue.json({str(p): o for p, o in ingested.items()}),
        "lag": sum(end - ingested.get(p, 0) for p, end in behind.items()),
    })
    return SensorResult(
        run_requests=[RunRequest(run_key=run_key, tags={"logstack/offsets": key})],
        cursor=json.dumps({"cluster": cluster_id, "end_offsets": ends}),
        asset_events=[observed],
    )
