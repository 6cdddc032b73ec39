"""Building many hours in one statement gives exactly the rows of building them one by one.

The lake is a real log (elastic-apache-2015: 41 hours, lines out of time order) with a
few unparseable lines mixed in, run through the Bytewax dataflow with the real sink and
enrichment. The reference is each table's one-hour SQL (`MetricTable.select`, which the
report also runs) over each hour's own files, hour by hour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, run_main

from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.lake.duck import hours_source, use_lake
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake, hour_dir
from logstack_dagster.lake.schema import rows_schema
from logstack_dagster.metrics.tables import (
    METRICS,
    TOP_PATHS,
    TRAFFIC,
    build_hour,
    build_hours,
    ensure_table,
)
from logstack_dagster.settings import Settings
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink

# An hour the log does not reach: hourly_traffic still gets a row of zeros for it.
EMPTY_HOUR = datetime(2015, 5, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lake(shared_data: Path, tmp_path_factory) -> Lake:
    lines = (shared_data / "elastic-apache-2015.log").read_bytes().splitlines()
    for i in range(100, len(lines), 500):
        lines.insert(i, b"not an access log line %d" % i)
    first_ms = int(datetime(2015, 5, 17, tzinfo=UTC).timestamp() * 1000)
    messages = [KafkaSourceMessage(key=None, value=v, topic="requests", partition=0, offset=i,
                                   timestamp=(1, first_ms + i)) for i, v in enumerate(lines)]
    settings = Settings(home=tmp_path_factory.mktemp("tables-lake"))
    enricher = RowEnricher()
    try:
        sink = LakeSink(settings.lake, "cluster-a", "requests", 1, run_id="run-1",
                        flush_rows=700)
        run_main(build_flow(TestingSource(messages, batch_size=500), sink,
                            BatchProcessor("combined", enricher=enricher)))
    finally:
        enricher.close()
    return Lake.open(settings.lake)


def lake_hours(lake: Lake) -> list[datetime]:
    folders = Path(lake.path(ROWS)).glob("year=*/month=*/day=*/hour=*")
    return sorted(datetime(*(int(p.split("=")[1]) for p in f.parts[-4:]), tzinfo=UTC)
                  for f in folders)


def one_by_one(conn: duckdb.DuckDBPyConnection, lake: Lake, hours: list[datetime]) -> None:
    """The reference: every table filled hour by hour with its one-hour SQL."""
    use_lake(conn, lake)
    for hour in hours:
        for name, table, schema in (("hour_rows", ROWS, rows_schema()),
                                    ("hour_quarantine", QUARANTINE, QUARANTINE_SCHEMA)):
            source = hours_source(lake, table, [hour])
            if source is None:
                conn.register(f"_{name}_empty", schema.empty_table())
                source = f"_{name}_empty"
            else:
                source = f"(SELECT * EXCLUDE (hour) FROM {source})"
            conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {source}")
        for metric in METRICS:
            ensure_table(conn, metric)
            conn.execute(f"INSERT INTO {metric.name} SELECT $1::TIMESTAMPTZ, * FROM "
                         f"({metric.select})", [hour])


def rows_of(conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def test_the_lake_spans_many_hours_with_quarantined_lines(lake):
    hours = lake_hours(lake)
    assert len(hours) > 24
    conn = duckdb.connect()
    one_by_one(conn, lake, hours)
    assert conn.execute("SELECT sum(requests), sum(quarantined) FROM hourly_traffic"
                        ).fetchone() == (5000, 10)


def test_many_hours_give_the_rows_of_one_hour_at_a_time(lake):
    hours = [EMPTY_HOUR, *lake_hours(lake)]
    expected, built = duckdb.connect(), duckdb.connect()
    one_by_one(expected, lake, hours)

    written = sum(build_hours(built, lake, metric, hours) for metric in METRICS)

    assert written == sum(len(rows_of(built, m.name)) for m in METRICS)
    for metric in METRICS:
        assert rows_of(built, metric.name) == rows_of(expected, metric.name), metric.name
    assert built.execute("SELECT requests, unique_ips, unique_visitors, bytes_sent, "
                         "quarantined FROM hourly_traffic WHERE hour = $1",
                         [EMPTY_HOUR]).fetchall() == [(0, 0, 0, 0, 0)]


def test_top_tables_keep_the_top_of_each_hour(lake):
    conn = duckdb.connect()
    build_hours(conn, lake, TOP_PATHS, lake_hours(lake))
    per_hour = conn.execute("SELECT max(n) FROM (SELECT hour, count(*) AS n "
                            "FROM hourly_top_paths GROUP BY hour)").fetchone()[0]
    assert per_hour == 100


def test_rebuilding_hours_replaces_those_hours_only(lake):
    hours = lake_hours(lake)
    conn = duckdb.connect()
    for metric in METRICS:
        build_hours(conn, lake, metric, hours)
    before = {m.name: rows_of(conn, m.name) for m in METRICS}
    # Rows that no build would write: the rebuilt hours must lose them, the others keep them.
    rebuilt = [hours[3], hours[7]]
    for hour in hours[2:9]:
        conn.execute("INSERT INTO hourly_traffic VALUES ($1, -1, -1, -1, -1, -1)", [hour])

    assert build_hours(conn, lake, TRAFFIC, rebuilt) == 2
    assert build_hour(conn, lake, TRAFFIC, hours[5]) == 1

    stray = conn.execute("SELECT hour FROM hourly_traffic WHERE requests = -1 "
                         "ORDER BY hour").fetchall()
    assert [h for (h,) in stray] == [h for h in hours[2:9] if h not in (*rebuilt, hours[5])]
    conn.execute("DELETE FROM hourly_traffic WHERE requests = -1")
    assert {m.name: rows_of(conn, m.name) for m in METRICS} == before


def test_a_failed_build_leaves_the_table_as_it_was(lake, tmp_path):
    hours = lake_hours(lake)
    conn = duckdb.connect()
    build_hours(conn, lake, TRAFFIC, hours)
    before = rows_of(conn, TRAFFIC.name)
    # A lake whose second hour holds a file that is no Parquet: the build fails after
    # it has deleted the first hours' rows, and must put them back.
    broken = Lake.open(str(tmp_path / "lake"))
    folder = Path(broken.path(ROWS, hour_dir(hours[1])))
    folder.mkdir(parents=True)
    (folder / "requests-broken.parquet").write_bytes(b"not parquet")

    with pytest.raises(duckdb.Error):
        build_hours(conn, broken, TRAFFIC, hours)
    assert rows_of(conn, TRAFFIC.name) == before
