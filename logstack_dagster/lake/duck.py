"""DuckDB over the lake: the `requests` and `quarantine` views and per-hour file lists."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import duckdb

from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake, hour_dir
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA


def hour_files(lake: Lake, table: str, hour: datetime) -> list[str]:
    """The Parquet files of `table` for the UTC hour starting at `hour`, as DuckDB paths."""
    files = lake.list_files(lake.path(table, hour_dir(hour)))
    if "://" not in lake.uri:
        return [f for f in files if f.endswith(".parquet")]
    scheme = lake.uri.split("://", 1)[0]
    return [f"{scheme}://{f}" for f in files if f.endswith(".parquet")]


def parquet_source(files: list[str]) -> str:
    """A `read_parquet(...)` table expression over `files` (which must not be empty)."""
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}], union_by_name = true)"


def register_views(conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Create the views `requests` and `quarantine` over every file of the lake.

    A table with no files yet gets an empty view of the right columns, so queries bind.
    """
    from logstack_dagster.lake.schema import rows_schema

    for table, schema in ((ROWS, rows_schema()), (QUARANTINE, QUARANTINE_SCHEMA)):
        glob = lake.glob(table).replace("'", "''")
        try:
            conn.execute(
                f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', "
                "union_by_name = true, hive_partitioning = false)"
            )
        except duckdb.IOException:
            conn.register(f"_{table}_empty", schema.empty_table())
            conn.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _{table}_empty")


def connect(lake: Lake, metrics_db: Path | None, read_only: bool = True,
            retry_seconds: float = 10.0) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with the lake's views and the metric tables attached.

    The metric database is attached as `metrics` and put on the search path, so its
    tables answer to their plain names. DuckDB lets one process write the file at a time:
    while a writer holds it, attaching waits and retries for up to `retry_seconds`.
    """
    conn = duckdb.connect()
    register_views(conn, lake)
    if metrics_db is None or (read_only and not metrics_db.exists()):
        return conn

    mode = " (READ_ONLY)" if read_only else ""
    quoted = str(metrics_db).replace("'", "''")
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            conn.execute(f"ATTACH '{quoted}' AS metrics{mode}")
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conn.execute("SET search_path = 'memory.main,metrics.main'")
    return conn
