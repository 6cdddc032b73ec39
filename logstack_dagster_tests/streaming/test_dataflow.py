"""The dataflow on Bytewax's testing source, into a real lake on disk."""

import duckdb
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, run_main

from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink

GOOD = (
    b'203.0.113.9 - - [22/Jan/2019:03:56:14 +0330] "GET /a?b=1 HTTP/1.1" 200 30577 '
    b'"-" "Mozilla/5.0"'
)
LATER = (
    b'198.51.100.7 - - [22/Jan/2019:05:10:00 +0000] "POST /login HTTP/1.1" 403 12 '
    b'"https://example.com/" "curl/8.0"'
)
BAD = b"this is not an access log line"


def _messages(values, partition=0, first_offset=0):
    return [
        KafkaSourceMessage(
            key=None,
            value=v,
            topic="requests",
            partition=partition,
            offset=first_offset + i,
            timestamp=(1, 1548126000000 + i),
        )
        for i, v in enumerate(values)
    ]


def _run(lake_path, messages, batch_size=3, partitions=2):
    sink = LakeSink(
        str(lake_path), "cluster-a", "requests", partitions, run_id="run-1", flush_rows=4
    )
    flow = build_flow(
        TestingSource(messages, batch_size=batch_size), sink, BatchProcessor("combined", enricher=None)
    )
    run_main(flow)


def _counts(lake_path):
    lake = Lake.open(str(lake_path))
    conn = duckdb.connect()
    rows = conn.execute(
        f'SELECT count(*), count(DISTINCT ("partition", "offset")) '
        f"FROM read_parquet('{lake.glob('requests')}')"
    ).fetchone()
    quarantined = conn.execute(
        f"SELECT count(*) FROM read_parquet('{lake.glob('quarantine')}')"
    ).fetchone()[0]
    return rows[0], rows[1], quarantined


def test_every_record_lands_once_in_rows_or_quarantine(tmp_path):
    values = [GOOD, LATER, BAD, GOOD, b"", LATER, GOOD] * 3
    messages = _messages(values, 0) + _messages(values, 1)

    _run(tmp_path, messages)

    rows, distinct, quarantined = _counts(tmp_path)
    assert rows == distinct == 2 * 15
    assert quarantined == 2 * 6
    commits = list(Manifest(Lake.open(str(tmp_path)), "cluster-a", "requests").commits())
    assert sum(c.records for c in commits) == len(messages)


def test_rows_go_to_the_hour_of_their_event_time(tmp_path):
    _run(tmp_path, _messages([GOOD, LATER]))

    hours = sorted(
        p.parent.relative_to(tmp_path / "requests").as_posix()
        for p in (tmp_path / "requests").rglob("*.parquet")
    )
    # 03:56 at +0330 is 00:26 UTC; 05:10 at +0000 stays in hour 05.
    assert hours == ["year=2019/month=01/day=22/hour=00", "year=2019/month=01/day=22/hour=05"]


def test_quarantined_line_keeps_reason_and_coordinates(tmp_path):
    _run(tmp_path, _messages([GOOD, BAD], partition=1, first_offset=41))

    conn = duckdb.connect()
    lake = Lake.open(str(tmp_path))
    row = conn.execute(
        f'SELECT topic, "partition", "offset", reason, raw '
        f"FROM read_parquet('{lake.glob('quarantine')}')"
    ).fetchone()
    assert row[:3] == ("requests", 1, 42)
    assert row[3]
    assert row[4] == BAD


def test_replaying_records_writes_nothing_twice(tmp_path):
    values = [GOOD, LATER, BAD, GOOD, LATER]
    _run(tmp_path, _messages(values))
    # A restart that re-reads from an older position, plus two new records.
    _run(tmp_path, _messages(values + [GOOD, BAD]))

    rows, distinct, quarantined = _counts(tmp_path)
    assert rows == distinct == 5
    assert quarantined == 2
