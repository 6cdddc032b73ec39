"""Run logstack's Dagster jobs on a real Dagster instance, for the command line.

The runs, their events and the asset materializations land in the instance's storage
(`DAGSTER_HOME`), so `dagster dev` on the same home shows them afterwards.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dagster import AssetCheckSeverity, DagsterInstance

from logstack_dagster.errors import LogstackError
from logstack_dagster.lake.layout import hour_key, shown_hour
from logstack_dagster.lake.manifest import Commit
from logstack_dagster.settings import Settings
from logstack_dagster.words import plural

log = logging.getLogger(__name__)

_INSTANCE_YAML = "telemetry:\n  enabled: false\n"

# The runs' own event log keeps every detail; the terminal gets warnings and errors only.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# A metrics run that a check blocks is expected and handled here (the hours are named,
# the rest is built again); its step failure would print a stack trace. Every failure is
# summed up in one line by `materialize_hours` instead.
_SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


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


@dataclass(frozen=True)
class HeldHour:
    """An hour whose metric tables past `hourly_traffic` were held back by a blocking
    check that failed at error severity."""

    hour: datetime
    check: str
    reason: str

    def describe(self) -> str:
        return f"{shown_hour(self.hour)} UTC: {self.reason} (check {self.check})"


@dataclass
class MetricsOutcome:
    """What `materialize_hours` did: its successful runs, the hours checks held back,
    the hours outside the partitions, and the runs that failed for any other reason."""

    run_ids: list[str] = field(default_factory=list)
    held: list[HeldHour] = field(default_factory=list)
    before_first: list[datetime] = field(default_factory=list)
    after_last: list[datetime] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    partitions_end: datetime | None = None  # the end of the last complete hour

    @property
    def ok(self) -> bool:
        return not self.held and not self.failures

    def raise_problem(self) -> None:
        """Raise JobFailed when a run failed, HoursHeldBack when a check held hours back."""
        if self.failures:
            raise JobFailed(self.problem())
        if self.held:
            raise HoursHeldBack(self)

    def problem(self) -> str:
        """One line saying what went wrong; empty when nothing did."""
        if self.failures:
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return self.failures[0] + more
        if self.held:
            checks = ", ".join(sorted({h.check for h in self.held}))
            return (f"{plural(len(self.held), 'hour')} held back by a failing blocking check "
                    f"({checks}): only hourly_traffic was built for "
                    f"{'it' if len(self.held) == 1 else 'them'}")
        return ""


class HoursHeldBack(JobFailed):
    """Some hours failed a blocking check; the other hours were built."""

    def __init__(self, outcome: MetricsOutcome):
        super().__init__(outcome.problem())
        self.outcome = outcome


def run_metrics(instance: DagsterInstance, settings: Settings,
                hours: list[datetime]) -> list[str]:
    """Materialize every metric asset for `hours` (see `materialize_hours`); return the
    run ids. Raises JobFailed after trying every hour when any run failed or any hour
    was held back by a check."""
    outcome = materialize_hours(instance, settings, hours)
    for hour in outcome.held:
        log.warning("held back %s", hour.describe())
    outcome.raise_problem()
    return outcome.run_ids


def materialize_hours(instance: DagsterInstance, settings: Settings,
                      hours: list[datetime]) -> MetricsOutcome:
    """Materialize every metric asset for `hours`, one run per stretch of consecutive hours.

    Hours outside the hourly partitions (before LOGSTACK_FIRST_HOUR, or not yet complete)
    are left out. Dagster blocks a whole run when a blocking check fails, so a run that
    fails that way is run again on the stretches between the hours the checks named
    (their `failed_hours`); those hours are held back. Every stretch is tried.
    """
    from logstack_dagster.definitions import build_defs
    from logstack_dagster.metrics.partitions import hourly_partitions

    outcome = MetricsOutcome()
    first = hourly_partitions.start
    last = hourly_partitions.get_last_partition_window()
    end = outcome.partitions_end = last.end if last is not None else first
    outcome.before_first = sorted(h for h in set(hours) if h < first)
    outcome.after_last = sorted(h for h in set(hours) if h >= end)
    inside = [h for h in hours if first <= h < end]

    job = build_defs(settings).resolve_job_def("hourly_metrics_job")
    pending = hour_ranges(inside)
    while pending:
        start, stop = pending.pop(0)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, run_config=_SILENT,
            tags={"dagster/asset_partition_range_start": hour_key(start),
                  "dagster/asset_partition_range_end": hour_key(stop)},
        )
        if result.success:
            outcome.run_ids.append(result.run_id)
            continue
        held = [h for h in _held_hours(result) if start <= h.hour <= stop]
        if not held:
            outcome.failures.append(
                f"metrics run {result.run_id} for {hour_key(start)}..{hour_key(stop)} "
                f"failed: {_failure(result)}")
            continue
        # The held hours' hourly_traffic is built (the checks judged it); their other
        # tables are not. The good hours between them are built again, hourly_traffic
        # included: a second pass over those hours, only when a check failed.
        outcome.held += held
        blocked = {h.hour for h in held}
        stretch = [h for h in inside if start <= h <= stop and h not in blocked]
        pending = hour_ranges(stretch) + pending
    outcome.held.sort(key=lambda h: (h.hour, h.check))
    return outcome


def _held_hours(result) -> list[HeldHour]:
    """The hours that the failed blocking checks of `result` named in `failed_hours`."""
    held: dict[tuple[datetime, str], HeldHour] = {}
    for evaluation in result.get_asset_check_evaluations():
        if (evaluation.passed or not evaluation.blocking
                or evaluation.severity != AssetCheckSeverity.ERROR):
            continue
        named = evaluation.metadata.get("failed_hours")
        for key, reason in ((named.value if named is not None else None) or {}).items():
            hour = datetime.strptime(key, "%Y-%m-%d-%H:%M").replace(tzinfo=timezone.utc)
            held[(hour, evaluation.check_name)] = HeldHour(hour, evaluation.check_name,
                                                           str(reason))
    return list(held.values())


def lake_hours(commits: list[Commit]) -> list[datetime]:
    """The UTC hours that hold rows or quarantined lines in `commits`, sorted."""
    return sorted(lake_hour_lines(commits))


def topic_hour_lines(settings: Settings) -> dict[datetime, int]:
    """Rows and quarantined lines of each UTC hour the current topic's lake holds."""
    from logstack_dagster.ingest.topic import resolve_cluster, topic_metadata
    from logstack_dagster.lake.layout import Lake
    from logstack_dagster.lake.manifest import Manifest

    cluster_id = topic_metadata(resolve_cluster(settings), settings.topic)[0]
    return lake_hour_lines(list(
        Manifest(Lake.open(settings.lake), cluster_id, settings.topic).commits()))


def lake_hour_lines(commits: list[Commit]) -> dict[datetime, int]:
    """Rows and quarantined lines of each UTC hour in `commits`."""
    lines: dict[datetime, int] = {}
    for entry in (entry for commit in commits for entry in commit.files):
        hour = datetime.strptime(entry.hour, "%Y-%m-%dT%H:00:00Z").replace(tzinfo=timezone.utc)
        lines[hour] = lines.get(hour, 0) + entry.rows
    return lines


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
