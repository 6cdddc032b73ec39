"""DuckDB over the lake: the `requests` and `quarantine` views and per-hour file lists.

On a local disk DuckDB reads the Parquet files itself. On object storage it reads them
through the lake's own pyarrow filesystem, registered with each DuckDB connection
(`use_lake`), so the endpoint, region and credentials are those the writers use.
DuckDB's `httpfs` extension would do this natively, but DuckDB fetches it from the
internet at run time, and PyPI ships it (`duckdb-extension-httpfs`) only up to DuckDB
1.5.5. When a build for the DuckDB logstack installs is published, pin it, load it from
that package and drop `_DuckFileSystem`; until then DuckDB is never asked for it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from fsspec.implementations.arrow import ArrowFSWrapper

from logstack_dagster.lake.compact import hidden_by_compaction
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake, LakeError, hour_dir
from logstack_dagster.lake.manifest import pending_paths
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA


def use_lake(conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Let `conn` read the lake's URLs (`s3://...`); nothing to do for a local lake."""
    if lake.local:
        return
    # Never let DuckDB fetch an extension from the internet for an s3:// path.
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    if lake.scheme not in conn.list_filesystems():
        conn.register_filesystem(_DuckFileSystem(lake))


def complete_files(lake: Lake, table: str, hour: datetime | None = None) -> list[str]:
    """The Parquet files of `table` (of one UTC hour, or all) that readers may count, as
    DuckDB paths: on object storage, those of batches still being written or left by a
    crash are left out, and on any lake the files a compaction replaced or is writing."""
    folder = lake.path(table) if hour is None else lake.path(table, hour_dir(hour))
    return [lake.url(f) for f in readable_files(lake, folder, recursive=hour is None)]


def readable_files(lake: Lake, folder: str, recursive: bool = False) -> list[str]:
    """The Parquet files in `folder` that readers count, as paths on the lake's
    filesystem; see `complete_files`."""
    files = [f for f in lake.list_files(folder, recursive) if f.endswith(".parquet")]
    # Listed first, notes read second: see `pending_paths` and `hidden_by_compaction`.
    hidden = pending_paths(lake) | hidden_by_compaction(lake, set(files))
    return [f for f in files if f not in hidden]


def hour_files(lake: Lake, table: str, hour: datetime) -> list[str]:
    """The complete Parquet files of `table` for the UTC hour starting at `hour`."""
    return complete_files(lake, table, hour)


def parquet_source(files: list[str], hive_partitioning: bool | None = None) -> str:
    """A `read_parquet(...)` table expression over `files` (which must not be empty).

    `hive_partitioning` False leaves out the columns DuckDB would make of the folder
    names (`year`, ..., `hour`); None lets DuckDB decide.
    """
    hive = "" if hive_partitioning is None else f", hive_partitioning = {hive_partitioning}"
    return f"read_parquet({sql_list(files)}, union_by_name = true{hive})"


def sql_list(files: list[str]) -> str:
    """`files` as a DuckDB list of string literals."""
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def hours_source(lake: Lake, table: str, hours: list[datetime]) -> str | None:
    """A table expression over `table`'s files of the UTC hours `hours`, None when none
    of them has files.

    Each row comes with `hour` (TIMESTAMPTZ, first): the hour of the folder it was read
    from. Quarantined lines that `logstack requeue` has parsed since are left out: they
    count as rows now.
    """
    from logstack_dagster.lake.requeue import without_requeued

    parts = []
    for hour in hours:
        files = hour_files(lake, table, hour)
        if files:
            parts.append(f"SELECT TIMESTAMPTZ '{hour.astimezone(UTC).isoformat()}' AS hour, * "
                         f"FROM {parquet_source(files, hive_partitioning=False)}")
    if not parts:
        return None
    # By name: an hour written before a column existed reads it as null.
    source = "(" + " UNION ALL BY NAME ".join(parts) + ")"
    return without_requeued(source, lake) if table == QUARANTINE else source


def register_views(conn: duckdb.DuckDBPyConnection, lake: Lake, attempts: int = 3) -> None:
    """Create the views `requests` and `quarantine` over every file of the lake.

    A table with no files yet gets an empty view of the right columns, so queries bind.
    The views name the files that were complete when they were created; when one of them
    is gone before the view is made (a compaction deleted it), the lake is listed again,
    up to `attempts` times in all. Raises LakeError when it still fails.
    """
    from logstack_dagster.lake.requeue import is_requeue_file, without_requeued
    from logstack_dagster.lake.schema import rows_schema

    use_lake(conn, lake)
    for attempt in range(1, attempts + 1):
        try:
            # A glob would also match files of uncommitted batches (object storage) and
            # both sides of a compaction's swap: list the complete ones.
            rows = complete_files(lake, ROWS)
            for table, listed, schema in ((ROWS, rows, rows_schema()),
                                          (QUARANTINE, complete_files(lake, QUARANTINE),
                                           QUARANTINE_SCHEMA)):
                if not listed:
                    conn.register(f"_{table}_empty", schema.empty_table())
                    conn.execute(f"CREATE OR REPLACE VIEW {table} AS "
                                 f"SELECT * FROM _{table}_empty")
                    continue
                source = (f"read_parquet({sql_list(listed)}, union_by_name = true, "
                          "hive_partitioning = false)")
                if table == QUARANTINE:
                    # Lines parsed since by `logstack requeue` count as rows, not here.
                    source = without_requeued(source, lake,
                                              [f for f in rows if is_requeue_file(f)])
                conn.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")
            return
        except duckdb.IOException as exc:
            if attempt == attempts:
                raise LakeError(f"reading the lake at {lake.uri} failed: "
                                f"{str(exc).splitlines()[0]}") from None


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


class _DuckFileSystem(ArrowFSWrapper):
    """The lake's pyarrow filesystem as fsspec, answering to the lake's URI scheme."""

    def __init__(self, lake: Lake):
        # Not cached by fsspec: two lakes on different endpoints must not share one.
        super().__init__(lake.fs, skip_instance_cache=True)
        self._scheme = lake.scheme

    @property
    def protocol(self) -> str:
        return self._scheme
