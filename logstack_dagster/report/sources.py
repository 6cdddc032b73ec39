"""Where a report's numbers come from: the hourly metric tables, or the lake recomputed.

Either way the report reads the same tables under the same names (`hourly_traffic`, ...),
so one set of queries answers both. The metric tables answer ranges of hours. A vhost or
humans/bots filter is beyond them: then the tables are rebuilt in memory from the lake,
by running the metric tables' own per-hour SQL (`MetricTable.select`) over the filtered
rows, for the very hours the metric tables hold. Without such a filter both sources
therefore agree number for number. `--source lake` instead counts every hour of the lake.
A table whose SQL needs columns the lake does not have yet (the user-agent ones, in a
lake ingested before that enrichment) is left out, as it would be missing from the metric
tables too.

Whenever the report covers only the metric tables' hours, the lake hours it leaves out
(not materialized yet) and the hours a failed check held back are counted in `LeftOut`,
for the report to say so.
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
from logstack_dagster.metrics.tables import (
    METRICS,
    STATUS_CODES,
    TRAFFIC,
    MetricTable,
    ensure_table,
)
from logstack_dagster.report.filters import HOUR, FilterError, ReportFilter, timestamp_sql

log = logging.getLogger(__name__)

METRICS_SOURCE = "metrics"
LAKE_SOURCE = "lake"
AUDIENCE_COLUMNS = ("ua_class", "is_bot")


@dataclass(frozen=True)
class LeftOut:
    """What the metric tables do not hold of the lake, within the report's filter.

    `hours` and `lines` (rows and quarantined lines): lake hours absent from
    `hourly_traffic`. `held_hours`: hours in `hourly_traffic` whose other tables a
    failed blocking check held back.
    """

    hours: int = 0
    lines: int = 0
    held_hours: int = 0

    def __bool__(self) -> bool:
        return bool(self.hours or self.held_hours)

    def to_json(self) -> dict:
        return {"hours": self.hours, "lines": self.lines, "held_hours": self.held_hours}


@dataclass
class Source:
    """An open DuckDB session holding the metric tables a report reads, and what it is."""

    conn: duckdb.DuckDBPyConnection
    kind: str
    report_filter: ReportFilter
    left_out: LeftOut = LeftOut()

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
        _file_quarantine(conn, lake)
        if kind == METRICS_SOURCE:
            return Source(conn, kind, report_filter,
                          _left_out(conn, report_filter, _metric_hours(conn, report_filter),
                                    held=True))
        # `--source lake` counts every lake hour; a filter the metric tables cannot
        # answer keeps to their hours, so that both sources agree on what they share.
        every_hour = prefer == LAKE_SOURCE or not have_metrics
        lake_lines = _lake_hours(conn, report_filter)
        hours = sorted(lake_lines) if every_hour else _metric_hours(conn, report_filter)
        left_out = (LeftOut() if every_hour
                    else _left_out(conn, report_filter, hours, lake_lines))
    except BaseException:
        conn.close()
        raise

    conn.close()
    return Source(_lake_metrics(lake, report_filter, hours), LAKE_SOURCE, report_filter,
                  left_out)


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


def _metric_hours(conn: duckdb.DuckDBPyConnection,
                  report_filter: ReportFilter) -> list[datetime]:
    """The hours `hourly_traffic` holds within `report_filter`."""
    return [hour for (hour,) in conn.execute(
        f"SELECT hour FROM {TRAFFIC.name} WHERE {report_filter.hour_sql()} ORDER BY 1"
    ).fetchall()]


def _lake_hours(conn: duckdb.DuckDBPyConnection,
                report_filter: ReportFilter) -> dict[datetime, int]:
    """Every hour of the lake with rows or failures that pass `report_filter`, with their
    number of lines (rows and quarantined lines).

    Reads the event time of every row in range: a column scan, the one cost the report
    adds to the metric tables' answer to find the hours they do not hold.
    """
    return dict(conn.execute(f"""
        SELECT hour, sum(n)::BIGINT FROM (
            SELECT date_trunc('hour', event_time) AS hour, count(*) AS n FROM requests
            WHERE {report_filter.rows_sql()} GROUP BY 1
            UNION ALL SELECT hour, count(*) FROM report_quarantine_filed
            WHERE hour IS NOT NULL AND {report_filter.hour_sql()} GROUP BY 1)
        GROUP BY 1
    """).fetchall())


def _left_out(conn: duckdb.DuckDBPyConnection, report_filter: ReportFilter,
              hours: list[datetime], lake: dict[datetime, int] | None = None, *,
              held: bool = False) -> LeftOut:
    """What the report leaves out when it covers `hours` only: the lake hours outside
    them, and with `held`, the hours among them that a failed check held back."""
    lake = _lake_hours(conn, report_filter) if lake is None else lake
    covered = set(hours)
    missing = [lines for hour, lines in lake.items() if hour not in covered]
    held_hours = 0
    if held:
        # Every hour with requests has a status-code row once built; only a blocked run
        # leaves hourly_traffic alone with them.
        built = (f"AND NOT EXISTS (SELECT 1 FROM {STATUS_CODES.name} AS s "
                 "WHERE s.hour = t.hour)" if has_table(conn, STATUS_CODES.name) else "")
        held_hours = conn.execute(
            f"SELECT count(*) FROM {TRAFFIC.name} AS t WHERE requests > 0 "
            f"AND {report_filter.hour_sql('t.hour')} {built}").fetchone()[0]
    return LeftOut(hours=len(missing), lines=sum(missing), held_hours=held_hours)


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
