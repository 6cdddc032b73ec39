from logstack_dagster.lake.layout import STAGING, Lake
from logstack_dagster.lake.manifest import Commit, FileEntry, Manifest, merge_ranges


def _commit(first: int, last: int, partition: int = 0) -> Commit:
    return Commit(
        cluster="c1",
        topic="t",
        partition=partition,
        first_offset=first,
        last_offset=last,
        records=last - first + 1,
        rows=last - first + 1,
        quarantined=0,
        run_id="r",
        files=[
            FileEntry(
                "requests",
                f"requests/year=2019/month=01/day=22/hour=00/b{first}.parquet",
                "2019-01-22T00:00:00Z",
                1,
                3,
            )
        ],
    )


def _stage(lake: Lake, commit: Commit) -> None:
    for entry in commit.files:
        lake.write_atomic(lake.path(STAGING, commit.batch_name, entry.path), b"abc")


def test_merge_ranges_joins_touching_and_overlapping():
    assert merge_ranges([(10, 19), (0, 9), (30, 40), (35, 50)]) == [(0, 19), (30, 50)]
    assert merge_ranges([]) == []


def test_commit_then_publish_moves_staged_files(tmp_path):
    lake = Lake.open(str(tmp_path))
    manifest = Manifest(lake, "c1", "t")
    commit = _commit(0, 99)
    _stage(lake, commit)

    manifest.commit(commit)
    manifest.publish(commit)

    assert lake.exists(lake.path(commit.files[0].path))
    assert not lake.exists(lake.path(STAGING, commit.batch_name))
    assert manifest.committed_ranges(0) == [(0, 99)]
    assert manifest.next_offsets() == {0: 100}


def test_recover_deletes_uncommitted_and_finishes_committed(tmp_path):
    lake = Lake.open(str(tmp_path))
    manifest = Manifest(lake, "c1", "t")
    # A crash after the commit record but before the move, and one before the record.
    published_late = _commit(0, 99)
    _stage(lake, published_late)
    manifest.commit(published_late)
    never_committed = _commit(100, 199)
    _stage(lake, never_committed)

    undone = manifest.recover(0)

    assert undone == 1
    assert lake.exists(lake.path(published_late.files[0].path))
    assert not lake.exists(lake.path(never_committed.files[0].path))
    assert lake.list_dirs(lake.path(STAGING)) == []
    assert manifest.committed_ranges(0) == [(0, 99)]


def test_manifests_of_two_clusters_do_not_mix(tmp_path):
    lake = Lake.open(str(tmp_path))
    Manifest(lake, "c1", "t").commit(_commit(0, 9))
    assert Manifest(lake, "c2", "t").next_offsets() == {}
    assert Manifest(lake, "c1", "other").next_offsets() == {}
    assert Manifest(lake, "c1", "t").next_offsets() == {0: 10}


def test_recover_leaves_other_partitions_alone(tmp_path):
    lake = Lake.open(str(tmp_path))
    manifest = Manifest(lake, "c1", "t")
    other = _commit(0, 9, partition=1)
    _stage(lake, other)
    assert manifest.recover(0) == 0
    assert lake.exists(lake.path(STAGING, other.batch_name))
