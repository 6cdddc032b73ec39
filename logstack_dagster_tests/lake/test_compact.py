"""Compaction merges a partition's files of an hour into one, and no reader, reconcile
or later run counts a row twice or misses one: before, during (a crash at each write of
a merge) and after the swap, and after the replaced files are gone."""

from __future__ import annotations

import fcntl
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from logstack_dagster.lake.compact import (
    SUFFIX,
    CompactionBusy,
    compact,
    hidden_by_compaction,
    merged_batches,
    read_merges,
)
from logstack_dagster.lake.duck import complete_files, hours_source, register_views
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake, LakeError
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.streaming.batch import RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor
from logstack_dagster.streaming.sink import FAILED_CLOSES, LakePartition

GOOD = b'10.0.%d.%d - - [10/Oct/2000:%02d:%02d:07 -0700] "GET /p%d HTTP/1.0" 200 %d'
BAD = b"this line is no access log line %d"
HOURS = (13, 14)
FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)


def _lines(first: int, count: int) -> list[bytes]:
    """`count` lines from offset `first`: two hours of common-format lines, every
    seventh one broken."""
    lines = []
    for n in range(first, first + count):
        hour = HOURS[(n // 40) % 2]
        lines.append(BAD % n if n % 7 == 3 else
                     GOOD % (n % 200, n % 250, hour, n % 60, n, n))
    return lines


def _fill(lake: Lake, partition: int, first: int, batches: int, size: int,
          run_id: str = "run-1") -> int:
    """Commit `batches` batches of `size` records to `partition`, one commit each (the
    small files of a followed topic); returns the next offset."""
    manifest = Manifest(lake, "cluster-a", "requests")
    part = LakePartition(manifest, partition, run_id, flush_rows=size, commit_seconds=0)
    processor = BatchProcessor("common", enricher=None)
    for index in range(batches):
        start = first + index * size
        raw = RawBatch("requests", partition, list(range(start, start + size)),
                       [971186136000] * size, _lines(start, size))
        part.write_batch([processor(raw)])
        part.snapshot()
    part.close()
    return first + batches * size


def _seen(lake: Lake) -> dict:
    """What readers see: the views' counts and an order-free hash of every row, the
    per-hour sources' counts, and whether the manifest reconciles."""
    conn = duckdb.connect()
    register_views(conn, lake)
    seen = {}
    for table in (ROWS, QUARANTINE):
        seen[table] = conn.execute(
            f"SELECT count(*), bit_xor(hash(t)) FROM {table} t").fetchone()
    hours = [datetime(2000, 10, 10, h + 7, tzinfo=timezone.utc) for h in HOURS]
    for table in (ROWS, QUARANTINE):
        seen[f"{table} by hour"] = conn.execute(
            f"SELECT hour, count(*) FROM {hours_source(lake, table, hours)} "
            "GROUP BY hour ORDER BY hour").fetchall()
    result = reconcile(Manifest(lake, "cluster-a", "requests"))
    seen["reconciles"] = (result.passed, result.mismatches, result.gaps)
    return seen


def _files(lake: Lake, table: str = ROWS) -> list[str]:
    return sorted(lake.list_files(lake.path(table), recursive=True))


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake.open(str(tmp_path / "lake"))
    for partition in (0, 1):
        _fill(lake, partition, 0, batches=6, size=80)
    return lake


def test_a_pass_merges_each_partitions_files_of_an_hour_and_readers_count_the_same(
        lake, tmp_path):
    before = _seen(lake)
    assert before[ROWS][0] + before[QUARANTINE][0] == 2 * 6 * 80
    assert before["reconciles"] == (True, [], [])
    old_files = _files(lake)
    # 6 commits x 2 hours x 2 partitions.
    assert len(old_files) == 24

    now = datetime.now(timezone.utc)
    result = compact(lake, tmp_path / "home", before=FAR, now=now)
    assert (result.merged_files, result.replaced_files) == (8, 48)  # with the quarantine
    assert _seen(lake) == before
    # The replaced files stay for readers that listed them, and are hidden.
    merged = [f for f in _files(lake) if f.endswith(SUFFIX)]
    assert len(merged) == 4 and set(old_files) < set(_files(lake))
    assert [f for f in complete_files(lake, ROWS)] == merged

    # Each merged file holds its partition's rows of its hour in offset order, and says
    # which batches it took in.
    for path in merged:
        table = pq.read_table(path)
        offsets = table.column("offset").to_pylist()
        assert offsets == sorted(offsets)
        assert merged_batches(table.schema) == [[n * 80, n * 80 + 79] for n in range(6)]

    # Grace over: the replaced files go; again: the notes go.
    later = compact(lake, tmp_path / "home", before=FAR, now=now + timedelta(seconds=901))
    assert (later.merged_files, later.deleted_files) == (0, 48)
    assert _files(lake) == merged
    assert {n.state for n in read_merges(lake)} == {"cleared"}
    # One note for the pass, however many merges it made.
    assert len(lake.list_files(lake.path("_compaction"))) == 1
    assert _seen(lake) == before
    compact(lake, tmp_path / "home", before=FAR, now=now + timedelta(seconds=1802))
    assert read_merges(lake) == []
    assert _seen(lake) == before


def test_a_reader_that_listed_before_the_swap_counts_the_old_files(lake, tmp_path):
    listed_before = set(_files(lake))
    compact(lake, tmp_path / "home", before=FAR)
    hidden = hidden_by_compaction(lake, listed_before)
    assert not listed_before & hidden
    listed_after = set(_files(lake))
    hidden = hidden_by_compaction(lake, listed_after)
    assert listed_after - hidden == {f for f in listed_after if f.endswith(SUFFIX)}


@pytest.mark.parametrize("crash_at", range(1, 7))
def test_a_crash_at_any_write_of_a_merge_loses_and_doubles_nothing(
        lake, tmp_path, monkeypatch, crash_at):
    """Writes of each merge: the pass's note (merge staged), the merged file, the note
    (merge swapped); 4 to 6 are those of the pass's second merge."""
    before = _seen(lake)
    writes = []
    real_write = Lake.write_atomic

    def crashing(self, path, data):
        writes.append(path)
        if len(writes) == crash_at:
            raise OSError("disk gone")
        real_write(self, path, data)

    monkeypatch.setattr(Lake, "write_atomic", crashing)
    with pytest.raises(OSError, match="disk gone"):
        compact(lake, tmp_path / "home", before=FAR)
    monkeypatch.setattr(Lake, "write_atomic", real_write)
    assert _seen(lake) == before

    # A write of the note itself cut short leaves its temporary file.
    notes = Path(lake.path("_compaction"))
    notes.mkdir(exist_ok=True)
    (notes / "cut-short.json.tmp").write_bytes(b'{"merg')
    result = compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    assert lake.list_files(lake.path("_compaction")) == []
    # A note left staged by the crash (its merged file whole, partial or missing) is
    # undone, and the merge made again.
    assert result.undone == (0 if crash_at in (1, 4) else 1)
    assert _seen(lake) == before
    assert read_merges(lake) == []
    assert not [f for f in _files(lake) + _files(lake, QUARANTINE) if not f.endswith(SUFFIX)]


def test_readers_running_through_every_step_count_each_row_once(lake, tmp_path):
    """A reader in a loop (listing, then DuckDB over the files) while passes merge, delete
    the replaced files after a short grace, and drop the notes."""
    expected = 2 * 6 * 80
    counts: list[int] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            conn = duckdb.connect()
            register_views(conn, lake)
            counts.append(conn.execute(
                f"SELECT (SELECT count(*) FROM {ROWS}) + (SELECT count(*) FROM {QUARANTINE})"
            ).fetchone()[0])
            conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        compact(lake, tmp_path / "home", before=FAR, grace_seconds=0.5)
        while read_merges(lake):
            time.sleep(0.3)
            compact(lake, tmp_path / "home", before=FAR, grace_seconds=0.5)
    finally:
        stop.set()
        reader.join()
    assert len(counts) > 10 and set(counts) == {expected}
    assert all(f.endswith(SUFFIX) for f in _files(lake))


def test_rows_written_after_a_pass_are_merged_by_the_next(lake, tmp_path):
    compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    _fill(lake, 0, 480, batches=3, size=80, run_id="run-2")
    expected = 6 * 80 * 2 + 3 * 80
    seen = _seen(lake)
    assert seen[ROWS][0] + seen[QUARANTINE][0] == expected
    assert seen["reconciles"] == (True, [], [])

    compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    assert _seen(lake) == seen
    partition_0 = [f for f in _files(lake) if "-p000-" in f]
    assert len(partition_0) == 2 and all(f.endswith(SUFFIX) for f in partition_0)
    for path in partition_0:
        assert merged_batches(pq.read_schema(path)) == [[n * 80, n * 80 + 79]
                                                        for n in range(9)]
    # The run's own reconciliation still finds its rows, now in the merged files.
    assert reconcile(Manifest(lake, "cluster-a", "requests"), run_id="run-2").passed


def test_a_merged_file_that_lost_rows_fails_the_reconciliation(lake, tmp_path):
    compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    [path, *_] = [f for f in _files(lake) if f.endswith(SUFFIX)]
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    result = reconcile(Manifest(lake, "cluster-a", "requests"))
    assert [m for m in result.mismatches if path.rsplit("/", 1)[1] in m]
    assert "(merged)" in result.mismatches[0]


def test_hours_not_yet_past_and_requeue_files_are_left_alone(lake, tmp_path):
    requeued = Path(_files(lake)[0]).with_name("requeue-0123456789abcdef0123.parquet")
    pq.write_table(pq.read_table(_files(lake)[0]), requeued)
    # Hours must end by `before`: the lines' hours are 20:00 and 21:00 UTC.
    result = compact(lake, tmp_path / "home",
                     before=datetime(2000, 10, 10, 21, tzinfo=timezone.utc))
    assert result.merged_files == 4  # 20:00 only, both tables, both partitions
    assert requeued.exists() and str(requeued) in complete_files(lake, ROWS)
    assert not [f for f in _files(lake) if "hour=21" in f and f.endswith(SUFFIX)]


@pytest.mark.parametrize("held", ["home", "lake"])
def test_one_compaction_at_a_time(lake, tmp_path, held):
    """Per home, and per local lake: passes of two homes on one lake undid each other's
    merges and lost rows."""
    lock = (tmp_path / "home" / "locks" if held == "home" else Path(lake.path("_locks")))
    lock.mkdir(parents=True)
    with open(lock / "compact.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(CompactionBusy, match="another compaction"):
            compact(lake, tmp_path / "home", before=FAR)
    assert not [f for f in _files(lake) if f.endswith(SUFFIX)]


def test_the_files_a_merge_replaced_stay_unless_the_merged_file_holds_their_rows(
        lake, tmp_path):
    before = _seen(lake)
    now = datetime.now(timezone.utc)
    compact(lake, tmp_path / "home", before=FAR, now=now)
    [merged, *_] = [f for f in _files(lake) if f.endswith(SUFFIX)]
    Path(merged).unlink()  # as another pass undoing it would
    assert _seen(lake)[ROWS] == before[ROWS]

    compact(lake, tmp_path / "home", before=datetime(2000, 1, 1, tzinfo=timezone.utc),
            now=now + timedelta(seconds=901))
    assert _seen(lake) == before
    assert merged not in {lake.path(m.file) for m in read_merges(lake)}


def test_odd_folders_a_last_hour_and_a_bad_note(tmp_path):
    """A folder that is no hour is skipped; an event in 9999-12-31 23:00, the last hour
    Python holds, neither stops compaction nor the report; a note that is not one
    logstack wrote stops readers with one line naming it."""
    from logstack_dagster_tests.test_cli import _run

    lake = Lake.open(str(tmp_path / "lake"))
    manifest = Manifest(lake, "cluster-a", "requests")
    part = LakePartition(manifest, 0, "run-1", flush_rows=50, commit_seconds=0)
    last = b'10.0.0.1 - - [31/Dec/9999:23:59:%02d +0000] "GET /end HTTP/1.0" 200 1'
    for first in (0, 50):
        raw = RawBatch("requests", 0, list(range(first, first + 50)), [0] * 50,
                       _lines(first, 40) + [last % n for n in range(10)])
        part.write_batch([BatchProcessor("common", enricher=None)(raw)])
        part.snapshot()
    part.close()
    Path(lake.path(ROWS, "year=2000", "month=10", "day=10", "backup")).mkdir()
    before = _seen(lake)

    result = compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    assert result.merged_files == 2 and _seen(lake) == before
    # The last hour is never over: hours are compacted once the next one has begun.
    latest = datetime(9999, 12, 31, 23, tzinfo=timezone.utc)
    assert compact(lake, tmp_path / "home", before=latest).merged_files == 0
    env = {"LOGSTACK_HOME": str(tmp_path / "home"), "LOGSTACK_LAKE": lake.root}
    report = _run("report", "--source", "lake", "--json", "--no-owners", env=env)
    assert report.returncode == 0, report.stderr

    Path(lake.path("_compaction", "zz.json")).write_text("junk")
    query = _run("query", "SELECT count(*) FROM requests", env=env)
    assert query.returncode == 1 and "Traceback" not in query.stderr
    assert "the compaction note" in query.stderr and "zz.json" in query.stderr


def test_the_command_compacts_and_names_a_bad_flag(lake, tmp_path):
    from logstack_dagster_tests.test_cli import _flag_error, _run

    env = {"LOGSTACK_HOME": str(tmp_path / "home"), "LOGSTACK_LAKE": lake.root}
    before = _seen(lake)
    done = _run("compact", "--before", "2100-01-01", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("merged 48 files into 8 (") and "over 2 hours" in done.stdout
    assert _seen(lake) == before
    typo = _run("compact", env={**env, "LOGSTACK_LAKE": str(tmp_path / "no-lake-here")})
    assert typo.returncode == 2 and "holds no commit records" in typo.stderr
    assert "Traceback" not in typo.stderr
    for flag, value in (("--before", "yesterday-ish"), ("--grace-seconds", "-1"),
                        ("--grace-seconds", "1e15"), ("--before", "0001-01-01T00:00+01:00"),
                        ("--before", "9999-12-31T23:59-05:00")):
        _flag_error(_run("compact", flag, value, env=env), flag)


def test_the_dagster_job_compacts(lake, tmp_path):
    from logstack_dagster.ingest.resources import KafkaResource
    from logstack_dagster.lake.resources import LakeResource
    from logstack_dagster.lake.schedules import compact_lake_job

    before = _seen(lake)
    resources = {
        "kafka": KafkaResource(brokers="", topic="requests", home=str(tmp_path / "home")),
        "lake": LakeResource(uri=lake.root)}
    # While another pass runs, the run skips rather than fails (and alerts).
    Path(lake.path("_locks")).mkdir()
    with open(lake.path("_locks", "compact.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        busy = compact_lake_job.execute_in_process(resources=resources)
    assert busy.success and busy.output_for_node("compact_lake") == {"skipped": True}

    result = compact_lake_job.execute_in_process(resources=resources)
    assert result.success
    counts = result.output_for_node("compact_lake")
    # The lines' hours are long past.
    assert (counts["merged_files"], counts["replaced_files"]) == (8, 48)
    assert _seen(lake) == before


def test_compaction_on_object_storage(s3_lake_uri, tmp_path):
    lake = Lake.open(s3_lake_uri)
    _fill(lake, 0, 0, batches=4, size=80)
    before = _seen(lake)
    result = compact(lake, tmp_path / "home", before=FAR)
    assert result.merged_files == 4  # two hours, two tables
    assert _seen(lake) == before
    compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    assert _seen(lake) == before
    assert all(f.endswith(SUFFIX) for f in complete_files(lake, ROWS))
    assert read_merges(lake) == []



def test_on_object_storage_the_files_of_a_batch_not_committed_are_never_merged(
        s3_lake_uri, tmp_path, monkeypatch):
    """There a batch's files are in its hour folders before its commit record. Merged,
    the rows of a batch that then died uncommitted counted, and again when the next run
    read its offsets into a batch of other bounds."""
    lake = Lake.open(s3_lake_uri)
    end = _fill(lake, 0, 0, batches=3, size=80)

    def died(self, commit):
        raise OSError("the run died before its commit record")

    # A context of its own: undoing the test's monkeypatch would also drop the S3
    # settings the fixtures set with it.
    with monkeypatch.context() as patch:
        patch.setattr(Manifest, "commit", died)
        _fill(lake, 0, end, batches=1, size=80)  # the close reports the error in its log
    FAILED_CLOSES.clear()
    uncommitted = [f for f in lake.list_files(lake.path(ROWS), recursive=True)
                   if "-000000000240-000000000319" in f]
    assert uncommitted

    compact(lake, tmp_path / "home", before=FAR, grace_seconds=0)
    assert all(lake.exists(f) for f in uncommitted)

    # The next run: recovery deletes the uncommitted batch, and the same offsets come
    # again in a batch of other bounds.
    Manifest(lake, "cluster-a", "requests").recover(0)
    _fill(lake, 0, end, batches=1, size=120, run_id="run-2")
    conn = duckdb.connect()
    register_views(conn, lake)
    counted = conn.execute(
        'SELECT count(*), count(DISTINCT "offset") FROM (SELECT "offset" FROM requests '
        'UNION ALL SELECT "offset" FROM quarantine)').fetchone()
    assert counted == (360, 360)
    assert reconcile(Manifest(lake, "cluster-a", "requests")).passed


def test_views_list_the_lake_again_when_a_listed_file_is_gone(lake, tmp_path, monkeypatch):
    """A pass whose grace ran out deletes files a reader listed a moment before: the
    views used to come out empty, without an error."""
    from logstack_dagster.lake import duck

    expected = _seen(lake)
    listed = duck.complete_files
    passes = []

    def listing_then_a_pass(lake_, table, hour=None):
        files = listed(lake_, table, hour)
        if not passes:  # between this listing and the view, a pass merges and deletes
            passes.append(compact(lake_, tmp_path / "home", before=FAR, grace_seconds=0))
        return files

    monkeypatch.setattr(duck, "complete_files", listing_then_a_pass)
    conn = duckdb.connect()
    register_views(conn, lake)
    assert passes[0].deleted_files == 48
    assert conn.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {ROWS} t").fetchone() == \
        expected[ROWS]

    monkeypatch.setattr(duck, "complete_files", lambda *_: [lake.path("gone.parquet")])
    with pytest.raises(LakeError, match="reading the lake at .* failed"):
        register_views(duckdb.connect(), lake)
