"""When the sink writes: a full buffer at once, a partial one once it has waited long
enough, and everything at the close; never at every snapshot."""

import time

import pytest

from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.streaming.batch import RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor
from logstack_dagster.streaming.sink import LakePartition

LINE = b'10.0.0.%d - - [10/Oct/2000:13:55:%02d -0700] "GET /p%d HTTP/1.0" 200 %d'


def _batch(first: int, count: int):
    raw = RawBatch("requests", 0, list(range(first, first + count)),
                   [971186136000] * count,
                   [LINE % (n % 250, n % 60, n, n) for n in range(first, first + count)])
    return BatchProcessor("common", enricher=None)(raw)


def _commits(manifest: Manifest, at_least: int = 0, wait: float = 10.0) -> list:
    """The partition's commits, waiting up to `wait` s for `at_least` of them."""
    deadline = time.monotonic() + wait
    while True:
        commits = sorted(manifest.commits(0), key=lambda c: c.first_offset)
        if len(commits) >= at_least or time.monotonic() > deadline:
            return commits
        time.sleep(0.02)


@pytest.fixture
def manifest(tmp_path):
    return Manifest(Lake.open(str(tmp_path / "lake")), "cluster-a", "requests")


def test_snapshots_leave_a_partial_buffer_until_it_has_waited_commit_seconds(manifest):
    part = LakePartition(manifest, 0, "run-1", flush_rows=1_000, commit_seconds=0.5)
    part.write_batch([_batch(0, 100)])
    part.snapshot()
    part.write_batch([_batch(100, 100)])
    part.snapshot()
    assert _commits(manifest, wait=0.3) == []

    time.sleep(0.5)
    part.snapshot()
    [first] = _commits(manifest, at_least=1)
    assert (first.first_offset, first.last_offset, first.records) == (0, 199, 200)

    # The clock starts again with the next batch.
    part.write_batch([_batch(200, 50)])
    part.snapshot()
    assert len(_commits(manifest, wait=0.3)) == 1
    part.close()
    commits = _commits(manifest, at_least=2)
    assert [(c.first_offset, c.last_offset) for c in commits] == [(0, 199), (200, 249)]


def test_a_full_buffer_is_written_without_waiting_for_a_snapshot(manifest):
    part = LakePartition(manifest, 0, "run-1", flush_rows=150, commit_seconds=3_600)
    part.write_batch([_batch(0, 100)])
    assert _commits(manifest, wait=0.3) == []
    part.write_batch([_batch(100, 100)])
    [full] = _commits(manifest, at_least=1)
    assert (full.first_offset, full.last_offset) == (0, 199)
    part.close()


def test_commit_seconds_zero_writes_at_every_snapshot(manifest):
    part = LakePartition(manifest, 0, "run-1", flush_rows=1_000, commit_seconds=0)
    for first in (0, 10, 20):
        part.write_batch([_batch(first, 10)])
        part.snapshot()
        assert len(_commits(manifest, at_least=first // 10 + 1)) == first // 10 + 1
    part.close()


def test_a_failed_write_is_raised_at_a_later_snapshot_of_an_idle_partition(manifest, tmp_path):
    """With nothing more coming to the partition, no flush would ever wait for the write."""
    part = LakePartition(manifest, 0, "run-1", flush_rows=1_000, commit_seconds=0)
    # Where the sink stages its files, a file: the write fails (even as root).
    staging = tmp_path / "lake" / "_staging"
    if staging.exists():
        staging.rmdir()
    staging.write_text("in the way\n")
    raised = None
    try:
        part.write_batch([_batch(0, 10)])  # hands the buffer to the writer at once
    except OSError as exc:
        raised = exc

    deadline = time.monotonic() + 10
    while raised is None and time.monotonic() < deadline:
        try:
            part.snapshot()
        except OSError as exc:
            raised = exc
        time.sleep(0.02)

    assert raised is not None
    assert _commits(manifest, wait=0) == []
