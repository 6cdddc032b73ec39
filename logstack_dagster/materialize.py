"""Run logstack's Dagster jobs on a real Dagster instance, for the command line.

The runs, their events and the asset materializations land in the instance's storage
(`DAGSTER_HOME`), so `dagster dev` on the same home shows them afterwards.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dagster import DagsterInstance

from logstack_dagster.errors import LogstackError
from logstack_dagster.lake.layout import hour_key
from logstack_dagster.lake.manifest import Commit
from logstack_dagster.settings import Settings

_INSTANCE_YAML = "telemetry:\n  enabled: false\n"

# The runs' own event log keeps every detail; the terminal gets warnings and errors only.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class JobFailed(LogstackError):
    """A Dagster run of a logstack job did not succeed."""


def open_instance(dagster_home: Path) -> DagsterInstance:
    """The persistent Dagster instance in `dagster_home`, made on first use."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return DagsterInstance.get()


def run_ingest(instance: DagsterInstance, settings: Settings) -> dict:
    """Run `ingest_job` once; return what its dataflow committed."""
    from logstack_dagster.definitions import build_defs

    result = build_defs(settings).resolve_job_def("ingest_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=_QUIET)
    if not result.success:
        raise JobFailed(f"ingest run {result.run_id} failed: {_failure(result)}")
    return result.output_for_node("ingest_topic")


def run_metrics(instance: DagsterInstance, settings: Settings,
                hours: list[datetime]) -> list[str]:
    """Materialize every metric asset for `hours`, one run per stretch of consecutive hours.

    Returns the run ids.
    """
    from logstack_dagster.definitions import build_defs

    job = build_defs(settings).resolve_job_def("hourly_metrics_job")
    run_ids = []
    for first, last in hour_ranges(hours):
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=_QUIET,
            tags={"dagster/asset_partition_range_start": hour_key(first),
                  "dagster/asset_partition_range_end": hour_key(last)},
        )
        if not result.success:
            raise JobFailed(
                f"metrics run {result.run_id} for {hour_key(first)}..{hour_key(last)} "
                f"failed: {_failure(result)}")
        run_ids.append(result.run_id)
    return run_ids


def lake_hours(commits: list[Commit]) -> list[datetime]:
    """The UTC hours that hold rows or quarantined lines in `commits`, sorted."""
    stamps = {entry.hour for commit in commits for entry in commit.files}
    return sorted(datetime.strptime(s, "%Y-%m-%dT%H:00:00Z").replace(tzinfo=timezone.utc)
                  for s in stamps)


def hour_ranges(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hours grouped into (first, last) stretches of consecutive hours."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and hour - ranges[-1][1] == timedelta(hours=1):
            ranges[-1] = (ranges[-1][0], hour)
        else:
            ranges.append((hour, hour))
    return ranges


def _failure(result) -> str:
    for event in result.all_events:
        if event.is_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            return error.message.strip() if error else "step failed"
    return "see the run's log in the Dagster UI"
