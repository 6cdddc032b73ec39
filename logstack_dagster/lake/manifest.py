"""The manifest: the truth about which topic records the lake holds.

Each flush of the dataflow's sink writes one commit record, a small JSON file named by
the offset range it covers. Only what a commit record names counts as in the lake, and
the record is written last. A batch's files are named by its cluster, topic, partition
and offset range, so a replay of the same records writes the same names.

On a local disk the files are first written under `_staging/<batch>/`, then the record
is written (the commit point), then the files are moved into place: readers that glob
the table folders never see a file of an uncommitted batch. A crash before the record
leaves only staging files, which the next run deletes; a crash after it leaves files
that the next run moves.

Object storage has no rename. There a note `_staging/<batch>.json` naming the batch's
files is written first, then each file once under its final name (an object appears
whole or not at all), then the record, then the note is deleted. Readers list a table
folder and then the notes, and leave out every file a note names (`pending_paths`): a
file listed before its note was deleted is either committed or named by the note. A
crash before the record leaves the note and its files, which the next run deletes; a
crash after it leaves a note, which the next run deletes.

Records whose offsets are already committed are skipped, so a replay after a restart
writes nothing twice. Records are kept per broker cluster id, so that a new embedded
broker, whose offsets start again at 0, is not mistaken for the one before it.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from logstack_dagster.lake.layout import MANIFEST, STAGING, Lake


@dataclass
class FileEntry:
    """One Parquet file of a commit: its table, its hour and what it holds."""

    table: str
    path: str
    hour: str
    rows: int
    bytes: int


@dataclass
class Commit:
    """What one flush of one topic partition wrote."""

    cluster: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: int
    rows: int
    quarantined: int
    run_id: str
    files: list[FileEntry] = field(default_factory=list)
    committed_at: str = ""
    log_format: str = ""  # what the batch was parsed with; empty in older manifests

    @property
    def batch_name(self) -> str:
        return batch_name(self.cluster, self.topic, self.partition,
                          self.first_offset, self.last_offset)

    def to_json(self) -> bytes:
        data = dict(self.__dict__, files=[f.__dict__ for f in self.files])
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, text: bytes) -> Commit:
        data = json.loads(text)
        data["files"] = [FileEntry(**f) for f in data["files"]]
        return cls(**data)


def batch_name(cluster: str, topic: str, partition: int, first: int, last: int) -> str:
    """The stable name of a batch's files; the same records always get the same name."""
    tag = f"{zlib.crc32(cluster.encode()):08x}"
    return f"{topic}-{tag}-p{partition:03d}-{first:012d}-{last:012d}"


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive offset ranges, sorted, with overlapping and touching ones joined."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class Manifest:
    """The commit records of one topic of one cluster in a lake."""

    def __init__(self, lake: Lake, cluster: str, topic: str):
        self.lake = lake
        self.cluster = cluster
        self.topic = topic

    def _partition_dir(self, partition: int) -> str:
        return self.lake.path(MANIFEST, self.cluster, self.topic, f"partition={partition}")

    def commits(self, partition: int | None = None) -> Iterator[Commit]:
        """Every commit record, of one partition or of all, in offset order per partition."""
        if partition is None:
            folders = self.lake.list_dirs(self.lake.path(MANIFEST, self.cluster, self.topic))
        else:
            folders = [self._partition_dir(partition)]
        for folder in folders:
            for path in self.lake.list_files(folder):
                if path.endswith(".json"):
                    yield Commit.from_json(self.lake.read(path))

    def last_formats(self) -> dict[int, str]:
        """The format each partition's latest commit was parsed with, where one is known."""
        latest: dict[int, Commit] = {}
        for commit in self.commits():
            seen = latest.get(commit.partition)
            if commit.log_format and (seen is None or commit.last_offset > seen.last_offset):
                latest[commit.partition] = commit
        return {partition: commit.log_format for partition, commit in latest.items()}

    def committed_ranges(self, partition: int) -> list[tuple[int, int]]:
        """The offset ranges of `partition` already in the lake, merged and sorted."""
        return merge_ranges((c.first_offset, c.last_offset) for c in self.commits(partition))

    def next_offsets(self) -> dict[int, int]:
        """Per partition, one past the highest committed offset: how far ingest has read."""
        ends: dict[int, int] = {}
        for commit in self.commits():
            ends[commit.partition] = max(ends.get(commit.partition, 0), commit.last_offset + 1)
        return ends

    def begin(self, commit: Commit, relatives: list[str]) -> None:
        """Announce the files `commit` is about to write (`relatives`, from the root).

        On object storage the note lets readers and recovery tell these files from
        committed ones; a local disk needs none, its staging folder does that.
        """
        if self.lake.local:
            return
        note = json.dumps({"batch": commit.batch_name, "files": relatives}).encode()
        self.lake.write_atomic(self.lake.path(STAGING, f"{commit.batch_name}.json"), note)

    def write_path(self, commit: Commit, relative: str) -> str:
        """Where `commit` writes its file `relative`: staged on a local disk, final else."""
        if self.lake.local:
            return self.lake.path(STAGING, commit.batch_name, relative)
        return self.lake.path(relative)

    def commit(self, commit: Commit) -> None:
        """Write the commit record; from here on the batch counts as in the lake."""
        commit.committed_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        name = f"{commit.first_offset:012d}-{commit.last_offset:012d}.json"
        self.lake.write_atomic(f"{self._partition_dir(commit.partition)}/{name}",
                               commit.to_json())

    def publish(self, commit: Commit) -> None:
        """Put a committed batch's files in place; a no-op for a batch published already."""
        if not self.lake.local:
            self.lake.delete_if_present(self.lake.path(STAGING, f"{commit.batch_name}.json"))
            return
        staged_root = self.lake.path(STAGING, commit.batch_name)
        for entry in commit.files:
            final = self.lake.path(entry.path)
            staged = f"{staged_root}/{entry.path}"
            if self.lake.exists(staged):
                self.lake.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                self.lake.fs.move(staged, final)
        if self.lake.exists(staged_root):
            self.lake.fs.delete_dir(staged_root)

    def recover(self, partition: int) -> int:
        """Finish or undo what a crash interrupted for `partition`; return batches undone."""
        committed = {c.batch_name: c for c in self.commits(partition)}
        prefix = batch_name(self.cluster, self.topic, partition, 0, 0).rsplit("-", 2)[0] + "-"
        undone = 0
        for staged in self.lake.list_dirs(self.lake.path(STAGING)):
            name = staged.rsplit("/", 1)[1]
            if not name.startswith(prefix):
                continue
            if name in committed:
                self.publish(committed[name])
            else:
                self.lake.fs.delete_dir(staged)
                undone += 1
        for note in self.lake.list_files(self.lake.path(STAGING)):
            name = note.rsplit("/", 1)[1].removesuffix(".json")
            if not name.startswith(prefix) or not note.endswith(".json"):
                continue
            if name not in committed:
                # Files first, the note last: until the note goes, readers skip them.
                for relative in json.loads(self.lake.read(note))["files"]:
                    self.lake.delete_if_present(self.lake.path(relative))
                undone += 1
            self.lake.delete_if_present(note)
        return undone


_RECORD = re.compile(r"^(?P<first>\d{12})-(?P<last>\d{12})\.json$")


def committed_batch_names(lake: Lake) -> set[str]:
    """The names of every committed batch of every cluster and topic, from the commit
    records' paths alone (nothing is read).

    Compaction merges only these batches' files. On object storage a batch's files are in
    the table folders before its commit, and a batch that never commits is deleted by the
    next run, which may then write the same offsets under other names: merged, its rows
    would count early, and then twice."""
    names = set()
    root = lake.path(MANIFEST)
    for path in lake.list_files(root, recursive=True):
        parts = path[len(root) + 1:].split("/")
        record = _RECORD.match(parts[-1])
        if len(parts) != 4 or record is None or not parts[2].startswith("partition="):
            continue
        names.add(batch_name(parts[0], parts[1], int(parts[2].split("=", 1)[1]),
                             int(record["first"]), int(record["last"])))
    return names


def pending_paths(lake: Lake) -> set[str]:
    """Paths of files that batches not yet committed are writing, or left by a crash.

    Only object storage has such files in the table folders. Call this after listing a
    folder, never before: a file listed earlier whose note is gone now was committed.
    """
    if lake.local:
        return set()
    pending = set()
    for note in lake.list_files(lake.path(STAGING)):
        if not note.endswith(".json"):
            continue
        try:
            relatives = json.loads(lake.read(note))["files"]
        except FileNotFoundError:
            continue  # committed and cleared between the listing and the read
        pending.update(lake.path(r) for r in relatives)
    return pending
