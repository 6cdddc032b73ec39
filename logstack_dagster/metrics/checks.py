"""Asset checks on the hourly metrics: they alert when too many lines fail to parse."""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from logstack_dagster.metrics.partitions import hourly_partitions
from logstack_dagster.metrics.tables import TRAFFIC
from logstack_dagster.settings import load_settings

_settings = load_settings()


@asset_check(
    asset=TRAFFIC.name,
    name="parse_failure_share",
    blocking=True,
    partitions_def=hourly_partitions,
    description=(
        "Share of the hour's lines that went to the quarantine. Warns above "
        f"{_settings.parse_failure_warn:.1%} and fails above {_settings.parse_failure_error:.1%} "
        "(LOGSTACK_PARSE_FAILURE_WARN / _ERROR), which blocks the hour's other metrics."
    ),
)
def parse_failure_share(context: AssetCheckExecutionContext,
                        duckdb: DuckDBResource) -> AssetCheckResult:
    window = context.partition_time_window
    with duckdb.get_connection() as conn:
        requests, quarantined = conn.execute(
            f"SELECT coalesce(sum(requests), 0), coalesce(sum(quarantined), 0) "
            f"FROM {TRAFFIC.name} WHERE hour >= $1 AND hour < $2",
            [window.start, window.end],
        ).fetchone()

    lines = requests + quarantined
    share = quarantined / lines if lines else 0.0
    if share > _settings.parse_failure_error:
        severity = AssetCheckSeverity.ERROR
    else:
        severity = AssetCheckSeverity.WARN
    return AssetCheckResult(
        passed=share <= _settings.parse_failure_warn,
        severity=severity,
        metadata={"share": share, "quarantined": quarantined, "lines": lines},
    )
