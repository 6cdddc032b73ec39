"""Hourly DuckDB metric assets, one per table in `metrics.tables`.

Each asset is partitioned by UTC hour and reads only its hours' Parquet folders. A
backfill runs as one run over its whole range (single-run backfill policy), which builds
each table's hours a statement per 12 hours, and every writer takes the `duckdb` pool, so
DuckDB's single writer is never contended.
"""


from datetime import datetime, timedelta

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_duckdb import DuckDBResource

from logstack_dagster.lake.resources import LakeResource
from logstack_dagster.metrics.partitions import hourly_partitions
from logstack_dagster.metrics.tables import METRICS, TRAFFIC, MetricTable, build_hours

DUCKDB_POOL = "duckdb"

# Like AutomationCondition.eager(), but for every hour rather than only the newest one:
# rows that arrive late for an hour rebuild that hour, and only that hour.
LATE_DATA = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild hours whose lake partition changed")
PREVIEW_ROWS = 10


def hours_of(context: AssetExecutionContext) -> list[datetime]:
    """The UTC hours of the partitions this run materializes."""
    window = context.partition_time_window
    hours, hour = [], window.start
    while hour < window.end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def markdown_table(columns: list[str], rows: list[tuple]) -> str:
    """A Markdown table of `rows` under `columns`, for previews in the Dagster UI."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_asset(metric: MetricTable) -> AssetsDefinition:
    deps = ["requests_lake"] if metric is TRAFFIC else ["requests_lake", TRAFFIC.name]

    @asset(
        name=metric.name,
        group_name="metrics",
        partitions_def=hourly_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=DUCKDB_POOL,
        deps=deps,
        kinds={"duckdb"},
        automation_condition=LATE_DATA,
        description=(
            f"DuckDB table `{metric.name}`: {metric.grain}. Source: that hour's Parquet "
            "files in the lake (requests and quarantine). Re-materializing an hour "
            "replaces exactly that hour's rows."
        ),
    )
    def build(context: AssetExecutionContext, duckdb: DuckDBResource,
              lake: LakeResource) -> MaterializeResult:
        hours = hours_of(context)
        opened = lake.open()
        with duckdb.get_connection() as conn:
            written = build_hours(conn, opened, metric, hours)
            cursor = conn.execute(
                f"SELECT * FROM {metric.name} WHERE hour >= $1 AND hour < $2 "
                f"ORDER BY hour, 3 DESC LIMIT {PREVIEW_ROWS}",
                [hours[0], hours[-1] + timedelta(hours=1)],
            )
            preview = markdown_table([d[0] for d in cursor.description], cursor.fetchall())
            totals = _totals(conn, metric, hours)

        context.log.info("%s: %d rows over %d hours", metric.name, written, len(hours))
        return MaterializeResult(metadata={
            "rows": written,
            "hours": len(hours),
            **totals,
            "preview": MetadataValue.md(preview),
        })

    return build


def _totals(conn, metric: MetricTable, hours: list[datetime]) -> dict[str, int]:
    """The sum of each count column over `hours`, for the UI to plot across partitions."""
    counts = [c.split()[0] for c in metric.columns.split(", ")
              if c.endswith("BIGINT") and not c.startswith("asn ")]
    if not counts:
        return {}
    sums = conn.execute(
        f"SELECT {', '.join(f'coalesce(sum({c}), 0)' for c in counts)} FROM {metric.name} "
        "WHERE hour >= $1 AND hour < $2", [hours[0], hours[-1] + timedelta(hours=1)],
    ).fetchone()
    return {f"total_{c}": int(v) for c, v in zip(counts, sums, strict=True)}


metric_assets = [_metric_asset(metric) for metric in METRICS]
