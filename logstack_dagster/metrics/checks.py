"""Asset checks on the hourly metrics, partition by partition.

Both are blocking: when one fails at error severity, the other metric tables are not
built in that run. A run covers a stretch of hours and Dagster blocks all of it, so each
check names the hours that failed in its `failed_hours` metadata (partition key: why);
`logstack materialize` builds the other hours again without them (see materialize.py).
Failures are also sent as alerts.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from logstack_dagster.alerts import AlertResource
from logstack_dagster.lake.duck import hours_source, use_lake
from logstack_dagster.lake.layout import QUARANTINE, ROWS, hour_key
from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.metrics.assets import DUCKDB_POOL
from logstack_dagster.metrics.partitions import hourly_partitions
from logstack_dagster.metrics.tables import TRAFFIC
from logstack_dagster.settings import load_settings

_settings = load_settings()


@asset_check(
    asset=TRAFFIC.name,
    name="parse_failure_share",
    blocking=True,
    # Both checks open the metrics file for writing, like the assets: one writer at a time.
    pool=DUCKDB_POOL,
    partitions_def=hourly_partitions,
    description=(
        "Share of each hour's lines that went to the quarantine. Warns above "
        f"{_settings.parse_failure_warn:.1%} and fails above {_settings.parse_failure_error:.1%} "
        "(LOGSTACK_PARSE_FAILURE_WARN / _ERROR), which blocks the hour's other metrics."
    ),
)
def parse_failure_share(context: AssetCheckExecutionContext, duckdb: DuckDBResource,
                        alerts: AlertResource) -> AssetCheckResult:
    window = context.partition_time_window
    with duckdb.get_connection() as conn:
        hours = conn.execute(
            f"SELECT hour, requests, quarantined FROM {TRAFFIC.name} "
            "WHERE hour >= $1 AND hour < $2 ORDER BY hour", [window.start, window.end],
        ).fetchall()

    # Judged hour by hour: a run over many hours fails if any one of them does.
    shares = [(q / (r + q) if r + q else 0.0, hour, q, r + q) for hour, r, q in hours]
    worst = max(shares, default=(0.0, window.start, 0, 0))
    share, hour, quarantined, lines = worst
    failed = {hour_key(h): f"{s:.1%} of {n:,} lines failed to parse"
              for s, h, _, n in shares if s > _settings.parse_failure_error}
    metadata = {
        "share": share, "hour": f"{hour:%Y-%m-%d %H:00}", "quarantined": quarantined,
        "lines": lines, "hours_checked": len(shares),
        "hours_over_warn": sum(1 for s in shares if s[0] > _settings.parse_failure_warn),
        "failed_hours": failed,
    }
    if share > _settings.parse_failure_warn:
        # The hours by name stay in the check's metadata; the alert counts them.
        alerts.send(f"logstack: {share:.2%} of lines failed to parse",
                    {**metadata, "failed_hours": len(failed)})
    return AssetCheckResult(
        passed=share <= _settings.parse_failure_warn,
        severity=(AssetCheckSeverity.ERROR if share > _settings.parse_failure_error
                  else AssetCheckSeverity.WARN),
        metadata=metadata,
    )


@asset_check(
    asset=TRAFFIC.name,
    name="metric_totals_match_lake",
    blocking=True,
    pool=DUCKDB_POOL,
    partitions_def=hourly_partitions,
    description=(
        "Requests and quarantined lines of each hour in hourly_traffic equal the rows of "
        "that hour's Parquet files in the lake."
    ),
)
def metric_totals_match_lake(context: AssetCheckExecutionContext, duckdb: DuckDBResource,
                             lake: LakeResource, alerts: AlertResource) -> AssetCheckResult:
    opened = lake.open()
    window = context.partition_time_window
    keys = hourly_partitions.get_partition_keys_in_time_window(window)
    starts = [hourly_partitions.time_window_for_partition_key(key).start for key in keys]
    with duckdb.get_connection() as conn:
        use_lake(conn, opened)
        metric = {hour: (r, q) for hour, r, q in conn.execute(
            f"SELECT hour, requests, quarantined FROM {TRAFFIC.name} "
            "WHERE hour >= $1 AND hour < $2", [window.start, window.end]).fetchall()}
        rows, quarantined = (_counts(conn, hours_source(opened, table, starts))
                             for table in (ROWS, QUARANTINE))
    failed = {}
    for key, start in zip(keys, starts, strict=True):
        lake_counts = (rows.get(start, 0), quarantined.get(start, 0))
        found = next((v for k, v in metric.items() if k == start), (0, 0))
        if tuple(found) != lake_counts:
            failed[key] = f"metric {tuple(found)}, lake {lake_counts}"
    differences = [f"{key}: {why}" for key, why in failed.items()]

    metadata = {"hours_checked": len(keys), "differences": "\n".join(differences[:20]) or "none",
                "failed_hours": failed}
    if differences:
        alerts.send("logstack: hourly metrics differ from the lake",
                    {**metadata, "failed_hours": len(failed)})
    return AssetCheckResult(passed=not differences, severity=AssetCheckSeverity.ERROR,
                            metadata=metadata)


def _counts(conn, source: str | None) -> dict:
    """Rows of `source` (from `hours_source`) by hour; {} when it has no files."""
    if source is None:
        return {}
    return dict(conn.execute(f"SELECT hour, count(*) FROM {source} GROUP BY hour").fetchall())
