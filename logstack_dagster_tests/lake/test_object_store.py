"""The lake on object storage: an S3-compatible server (moto) on 127.0.0.1.

S3 has no rename, so a batch's files are written once under their final names while a
note in `_staging` names them; readers and recovery go by the notes and the manifest.
"""

import duckdb
import pyarrow as pa
import pytest
from bytewax.testing import TestingSource, run_main

from logstack_dagster.lake.duck import complete_files, connect, parquet_source, use_lake
from logstack_dagster.lake.layout import ROWS, STAGING, Lake, LakeError, parquet_bytes
from logstack_dagster.lake.manifest import Commit, FileEntry, Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.settings import load_settings
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink
from logstack_dagster_tests.lake.conftest import SECRET_KEY
from logstack_dagster_tests.streaming.test_dataflow import BAD, GOOD, LATER, _messages

HOUR = "requests/year=2019/month=01/day=22/hour=00"


def _commit(first: int, last: int) -> tuple[Commit, pa.Table]:
    """A commit of offsets `first`..`last` with one file, and the rows of that file."""
    return Commit(cluster="c1", topic="t", partition=0, first_offset=first, last_offset=last,
                  records=last - first + 1, rows=last - first + 1, quarantined=0,
                  run_id="r", files=[FileEntry("requests", f"{HOUR}/b{first}.parquet",
                                               "2019-01-22T00:00:00Z", last - first + 1,
                                               0)]), pa.table({"n": range(first, last + 1)})


def _write(manifest: Manifest, commit: Commit, table) -> None:
    """What the sink does before its commit record: the note, then each file once."""
    manifest.begin(commit, [f.path for f in commit.files])
    for entry in commit.files:
        manifest.lake.write_atomic(manifest.write_path(commit, entry.path),
                                   parquet_bytes(table))


def _count(lake: Lake) -> int:
    files = complete_files(lake, ROWS)
    if not files:
        return 0
    conn = duckdb.connect()
    use_lake(conn, lake)
    return conn.execute(f"SELECT count(*) FROM {parquet_source(files)}").fetchone()[0]


def test_settings_put_endpoint_and_region_in_the_uri_and_never_credentials(s3_env):
    settings = load_settings({"LOGSTACK_LAKE": "s3://bucket/lake",
                              "LOGSTACK_S3_ENDPOINT": "http://127.0.0.1:9000",
                              "LOGSTACK_S3_REGION": "eu-central-1", **s3_env})

    assert settings.lake == ("s3://bucket/lake?endpoint_override=127.0.0.1:9000"
                             "&scheme=http&region=eu-central-1")
    assert SECRET_KEY not in repr(settings)


def test_a_uri_with_credentials_is_refused_without_repeating_them(s3_lake_uri):
    with pytest.raises(LakeError) as refused:
        Lake.open(f"{s3_lake_uri}&secret_key={SECRET_KEY}")
    assert SECRET_KEY not in str(refused.value)
    assert "AWS_SECRET_ACCESS_KEY" in str(refused.value)


def test_a_missing_bucket_is_one_clear_line(s3_lake_uri, s3_bucket):
    with pytest.raises(LakeError) as missing:
        Lake.open(s3_lake_uri.replace(s3_bucket, "no-such-bucket"))
    message = str(missing.value)
    assert "no-such-bucket" in message and "\n" not in message


def test_files_of_a_batch_count_only_once_it_is_committed(s3_lake_uri):
    lake = Lake.open(s3_lake_uri)
    manifest = Manifest(lake, "c1", "t")
    commit, table = _commit(0, 9)

    _write(manifest, commit, table)
    # The object is there, whole, under its final name; readers leave it out.
    assert lake.exists(lake.path(commit.files[0].path))
    assert complete_files(lake, ROWS) == []
    assert _count(lake) == 0

    manifest.commit(commit)
    manifest.publish(commit)
    assert complete_files(lake, ROWS) == [f"s3://{lake.path(commit.files[0].path)}"]
    assert _count(lake) == 10
    assert lake.list_files(lake.path(STAGING)) == []
    assert reconcile(manifest).passed


def test_recover_deletes_what_a_crash_left_uncommitted_and_keeps_the_rest(s3_lake_uri):
    lake = Lake.open(s3_lake_uri)
    manifest = Manifest(lake, "c1", "t")
    # A crash after the commit record, before the note was cleared ...
    committed, table = _commit(0, 9)
    _write(manifest, committed, table)
    manifest.commit(committed)
    # ... and one after the files were written, before the record.
    orphan, orphan_table = _commit(10, 19)
    _write(manifest, orphan, orphan_table)

    assert manifest.recover(0) == 1

    assert lake.exists(lake.path(committed.files[0].path))
    assert not lake.exists(lake.path(orphan.files[0].path))
    assert lake.list_files(lake.path(STAGING)) == []
    assert manifest.committed_ranges(0) == [(0, 9)]
    assert _count(lake) == 10


def test_the_dataflow_writes_the_same_rows_to_s3_as_to_a_disk(s3_lake_uri, tmp_path):
    values = [GOOD, LATER, BAD, GOOD, b"", LATER, GOOD] * 3
    messages = _messages(values, 0) + _messages(values, 1)

    def run(uri: str) -> None:
        sink = LakeSink(uri, "cluster-a", "requests", 2, run_id="run-1", flush_rows=4)
        run_main(build_flow(TestingSource(messages, batch_size=3), sink,
                            BatchProcessor("combined", enricher=None)))

    def contents(uri: str) -> dict:
        conn = connect(Lake.open(uri), None)
        return {table: conn.execute(
            f'SELECT * FROM {table} ORDER BY "partition", "offset"'
        ).fetchall() for table in ("requests", "quarantine")}

    run(s3_lake_uri)
    run(str(tmp_path))

    on_s3 = contents(s3_lake_uri)
    assert len(on_s3["requests"]) == 30 and len(on_s3["quarantine"]) == 12
    assert on_s3 == contents(str(tmp_path))
    lake = Lake.open(s3_lake_uri)
    assert lake.list_files(lake.path(STAGING)) == []
    assert reconcile(Manifest(lake, "cluster-a", "requests")).passed


def test_requeued_lines_move_from_the_quarantine_to_the_rows_on_s3(s3_lake_uri):
    from logstack_dagster.lake.requeue import requeue

    iso = b'203.0.113.5 - - 2019-01-22T01:05:00+00:00 "GET /iso HTTP/1.1" 200 5 "-" "curl/8.0"'
    messages = _messages([GOOD, iso, LATER, iso, BAD])
    sink = LakeSink(s3_lake_uri, "cluster-a", "requests", 1, run_id="run-1", flush_rows=4)
    run_main(build_flow(TestingSource(messages, batch_size=2), sink,
                        BatchProcessor("combined", enricher=None)))
    lake = Lake.open(s3_lake_uri)

    def counts():
        conn = connect(lake, None)
        return conn.execute("SELECT (SELECT count(*) FROM requests), "
                            "(SELECT count(*) FROM quarantine)").fetchone()

    assert counts() == (2, 3)
    assert requeue(lake, "combined_iso").parsed == 2
    assert counts() == (4, 1)
