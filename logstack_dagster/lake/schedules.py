"""The compaction job, which merges the small files of past hours, and its schedule."""

from pathlib import Path

from dagster import (
    DefaultScheduleStatus,
    OpExecutionContext,
    Out,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from logstack_dagster.ingest.resources import KafkaResource
from logstack_dagster.lake.compact import CompactionBusy, compact
from logstack_dagster.lake.resources import LakeResource


@op(
    description=(
        "Merge, in every hour that ended before the previous one, the files of each topic "
        "partition into one; delete the files earlier merges replaced once their grace "
        "(15 minutes) is over. Rows are unchanged, so no metric needs rebuilding."
    ),
    out=Out(dict, description="Files merged and written, rows, replaced files deleted."),
)
def compact_lake(context: OpExecutionContext, kafka: KafkaResource, lake: LakeResource):
    try:
        result = compact(lake.open(), Path(kafka.home))
    except CompactionBusy as exc:
        # The other pass does the work; a failed run would raise an alert for nothing.
        context.log.info("skipped: %s", exc)
        yield Output({"skipped": True}, metadata={"skipped": str(exc)})
        return
    context.log.info("merged %d files into %d (%d rows) over %d hours; deleted %d replaced "
                     "files", result.replaced_files, result.merged_files, result.rows,
                     len(result.hours), result.deleted_files)
    counts = {"merged_files": result.merged_files, "replaced_files": result.replaced_files,
              "rows": result.rows, "hours": len(result.hours),
              "deleted_files": result.deleted_files, "undone": result.undone}
    yield Output(counts, metadata=counts)


@job(description="Merge the small Parquet files of past hours (one compaction pass).")
def compact_lake_job():
    compact_lake()


# Stopped until turned on in the UI: a pass rewrites past hours, which a deployment
# should choose to do. Twenty past the hour, clear of the metrics schedule at five past.
compact_lake_schedule = ScheduleDefinition(
    job=compact_lake_job, cron_schedule="20 * * * *", name="compact_lake_schedule",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Compact the lake's past hours every hour.",
)
