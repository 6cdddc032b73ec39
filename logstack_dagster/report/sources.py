"""Where a report's numbers come from: the hourly metric tables, or the lake recomputed.

Either way the report reads the same tables under the same names (`hourly_traffic`, ...),
so one set of queries answers both. The metric tables answer ranges of hours. A vhost or
humans/bots filter is beyond them: then the tables are rebuilt in memory from the lake,
by running the metric tables' own per-hour SQL (`MetricTable.select`) over the filtered
rows, for the very hours the metric tables hold. Without such a filter both sources
therefore agree number for number. A table whose SQL needs columns the lake does not
have yet (the user-agent ones, in a lake ingested before that enrichment) is left out,
as it would be missing from the metric tables too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from logstack_dagster.errors import LogstackError
from logstack_dagster.lake.duck import complete_files, connect, sql_list
from logstack_dagster.lake.layout import LAST_HOUR, QUARANTINE, Lake, LakeError
from logstack_dagster.metrics.tables import METRICS, TRAFFIC, MetricTable, ensure_table
from logstack_dagster.report.filters import HOUR, FilterError, ReportFilter, timestamp_sql

log = logging.getLogger(__name__)

METRICS_SOURCE = "metrics"
LAKE_SOURCE = "lake"
AUDIENCE_COLUMNS = ("ua_class", "is_bot")


@dataclass
class Source:
    """An open DuckDB session holding the metric tables a report reads, and what it is."""

    conn: duckdb.DuckDBPyConnection
    kind: str
    report_filter: ReportFilter

    def close(self) -> None:
        self.conn.close()


def open_source(lake: Lake, metrics_db: Path | None, report_filter: ReportFilter,
                prefer: str | None = None) -> Source:
    """Open the source that can answer `report_filter`: the metric tables when they can,
    else the lake. `prefer` forces one (`metrics` or `lake`) and fails when it cannot."""
    conn = connect(lake, metrics_db)
    conn.execute("SET TimeZone = 'UTC'")
    try:
        _check_filter(conn, report_filter)
        have_metrics = has_table(conn, TRAFFIC.name)
        kind = prefer or (LAKE_SOURCE if report_filter.needs_lake or not have_metrics
                          else METRICS_SOURCE)
        if kind == METRICS_SOURCE and not have_metrics:
            raise LogstackError("no metric tables yet: run `logstack materialize` first")
        if kind == METRICS_SOURCE and report_filter.needs_lake:
            raise FilterError("the metric tables cannot answer --vhost, --humans or --bots; "
                              "leave out --source to read the lake")
        if kind == METRICS_SOURCE:
            return Source(conn, kind, report_filter)
        _file_quarantine(conn, lake)
        hours = _report_hours(conn, report_filter, have_metrics)
    except BaseException:
        conn.close()
        raise

    conn.close()
    return Source(_lake_metrics(lake, report_filter, hours), LAKE_SOURCE, report_filter)


def lake_columns(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """The column names of the lake's `requests` view."""
    return {row[0] for row in conn.execute("DESCRIBE requests").fetchall()}


def has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $1", [name]
    ).fetchone()[0] > 0


def _check_filter(conn: duckdb.DuckDBPyConnection, report_filter: ReportFilter) -> None:
    missing = set(AUDIENCE_COLUMNS) - lake_columns(conn)
    if report_filter.audience and missing:
        raise FilterError(
            f"--{report_filter.audience}: the lake has no {' or '.join(sorted(missing))} "
            "column, so humans and bots cannot be told apart; ingest with the user-agent "
            "enrichment first")
    if report_filter.vhost is None:
        return
    known = [v for (v,) in conn.execute(
        "SELECT DISTINCT vhost FROM requests WHERE vhost IS NOT NULL ORDER BY 1 LIMIT 11"
    ).fetchall()]
    if report_filter.vhost.lower() not in {v.lower() for v in known} and len(known) <= 10:
        listed = ", ".join(known) if known else "none: the log format has no %v field"
        raise FilterError(f"--vhost: no request in the lake has vhost {report_filter.vhost!r} "
                          f"(vhosts seen: {listed})")


def _report_hours(conn: duckdb.DuckDBPyConnection, report_filter: ReportFilter,
                  have_metrics: bool) -> list[datetime]:
    """The hours the report covers: those the metric tables hold when there are any, so the
    lake answers for the same hours; else every hour of the lake with rows or failures."""
    if have_metrics:
        sql = f"SELECT hour FROM {TRAFFIC.name} WHERE {report_filter.hour_sql()} ORDER BY 1"
    else:
        sql = f"""
            SELECT DISTINCT hour FROM (
                SELECT date_trunc('hour', event_time) AS hour FROM requests
                UNION ALL SELECT hour FROM report_quarantine_filed)
            WHERE {report_filter.hour_sql()} ORDER BY 1
        """
    return [hour for (hour,) in conn.execute(sql).fetchall()]


def _file_quarantine(conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The view `report_quarantine_filed`: quarantined lines with the hour they are filed
    under, read from their folder.

    The sink picks that hour (a parsed neighbour's event time, else the broker's time), so
    the folder, not any one column, is what the metric tables counted.
    """
    files = complete_files(lake, QUARANTINE)
    if not files:
        conn.execute("CREATE OR REPLACE TEMP VIEW report_quarantine_filed AS "
                     "SELECT *, NULL::TIMESTAMPTZ AS hour FROM quarantine")
        return
    try:
        conn.execute(
            "CREATE OR REPLACE TEMP VIEW report_quarantine_filed AS "
            "SELECT * EXCLUDE (year, month, day, hour), "
            "make_timestamptz(year::BIGINT, month::BIGINT, day::BIGINT, hour::BIGINT, "
            "0, 0, 'UTC') AS hour "
            f"FROM read_parquet({sql_list(files)}, union_by_name = true, "
            "hive_partitioning = true)")
    except duckdb.IOException as exc:
        # A file listed a moment ago is gone: failing beats counting no quarantined line.
        raise LakeError(f"reading the lake at {lake.uri} failed: "
                        f"{str(exc).splitlines()[0]}") from None


def _lake_metrics(lake: Lake, report_filter: ReportFilter,
                  hours: list[datetime]) -> duckdb.DuckDBPyConnection:
    """An in-memory session whose metric tables are built from the filtered lake rows."""
    started = time.monotonic()
    conn = connect(lake, None)
    conn.execute("SET TimeZone = 'UTC'")
    _file_quarantine(conn, lake)
    conn.execute("CREATE TEMP TABLE report_rows AS "
                 f"SELECT * FROM requests WHERE {report_filter.rows_sql()}")
    conn.execute("CREATE TEMP TABLE report_quarantine AS SELECT * FROM report_quarantine_filed "
                 f"WHERE {report_filter.hour_sql()}")
    conn.execute("CREATE OR REPLACE TEMP VIEW hour_rows AS SELECT * FROM report_rows")
    conn.execute("CREATE OR REPLACE TEMP VIEW hour_quarantine AS "
                 "SELECT * EXCLUDE (hour) FROM report_quarantine")
    metrics = [m for m in METRICS if _binds(conn, m)]
    for metric in metrics:
        ensure_table(conn, metric)

    for hour in hours:
        low = timestamp_sql(hour)
        high = "" if hour == LAST_HOUR else f" AND event_time < {timestamp_sql(hour + HOUR)}"
        conn.execute("CREATE OR REPLACE TEMP VIEW hour_rows AS SELECT * FROM report_rows "
                     f"WHERE event_time >= {low}{high}")
        conn.execute("CREATE OR REPLACE TEMP VIEW hour_quarantine AS SELECT * EXCLUDE (hour) "
                     f"FROM report_quarantine WHERE hour = {low}")
        for metric in metrics:
            conn.execute(f"INSERT INTO {metric.name} SELECT $1::TIMESTAMPTZ, * FROM "
                         f"({metric.select})", [hour])
    log.info("rebuilt %d metric tables for %d hours from the lake in %.2f s",
             len(metrics), len(hours), time.monotonic() - started)
    return conn


def _binds(conn: duckdb.DuckDBPyConnection, metric: MetricTable) -> bool:
    """True when the lake has every column `metric`'s SQL reads."""
    try:
        conn.execute(f"SELECT * FROM ({metric.select}) LIMIT 0")
    except duckdb.BinderException as exc:
        log.info("%s left out: the lake lacks a column it needs (%s)", metric.name,
                 str(exc).splitlines()[0])
        return False
    return True
