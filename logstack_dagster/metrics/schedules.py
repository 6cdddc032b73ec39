"""The hourly job over every metric asset, and the schedule that runs it."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

hourly_metrics_job = define_asset_job(
    name="hourly_metrics_job",
    selection=AssetSelection.groups("metrics"),
    description="Build every hourly metric table for the selected hours, with their checks.",
)

# A schedule built from an hourly partitioned job materializes the last complete hour.
hourly_metrics_schedule = build_schedule_from_partitioned_job(
    hourly_metrics_job, name="hourly_metrics_schedule", minute_of_hour=5,
)
