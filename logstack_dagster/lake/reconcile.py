"""Reconciling the lake with its manifest: what the commit records say is what the files hold.

Reads only Parquet footers, so it is cheap enough to run after every ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from logstack_dagster.lake.compact import SUFFIX, file_prefix, merged_batches
from logstack_dagster.lake.duck import readable_files
from logstack_dagster.lake.layout import Lake, parquet_rows
from logstack_dagster.lake.manifest import Manifest


@dataclass
class Reconciliation:
    """Counts from the manifest, and every way the files or offsets disagree with it."""

    records: int = 0
    rows: int = 0
    quarantined: int = 0
    files: int = 0
    mismatches: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.gaps


def reconcile(manifest: Manifest, run_id: str | None = None) -> Reconciliation:
    """Check the commits (of `run_id`, or all) against their files and each other.

    A commit's records must equal its rows plus quarantined lines, each file must hold
    the rows its commits say, and the committed offsets of a partition must have no holes.
    A file that a compaction replaced is checked through the merged file holding it: that
    one must hold the rows of every commit it took in.
    """
    result = Reconciliation()
    spans: dict[int, list[tuple[int, int]]] = {}
    rows_of: dict[str, int] = {}  # a batch's file -> the rows its commit put in it
    counted_files: list[tuple[str, int, int]] = []
    for commit in manifest.commits():
        spans.setdefault(commit.partition, []).append((commit.first_offset, commit.last_offset))
        for entry in commit.files:
            rows_of[entry.path] = entry.rows
        if run_id is not None and commit.run_id != run_id:
            continue
        result.records += commit.records
        result.rows += commit.rows
        result.quarantined += commit.quarantined
        if commit.records != commit.rows + commit.quarantined:
            result.mismatches.append(f"{commit.batch_name}: {commit.records} records but "
                                     f"{commit.rows} rows + {commit.quarantined} quarantined")
        counted_files += [(e.path, commit.first_offset, commit.last_offset)
                          for e in commit.files]
    result.files = len(counted_files)

    # Only the folders of the commits counted are listed.
    holders = _Holders(manifest.lake)
    for holder in sorted({holders.find(*counted) for counted in counted_files}):
        batches = holders.batches.get(holder)
        if batches is None:
            expected = rows_of[holder]
        else:  # merged: the rows of every batch it took in
            folder, prefix = holder.rsplit("/", 1)[0], file_prefix(holder)
            expected = sum(rows_of.get(f"{folder}/{prefix}{first:012d}-{last:012d}.parquet", 0)
                           for first, last in batches)
        actual = parquet_rows(manifest.lake, manifest.lake.path(holder))
        if actual != expected:
            merged = " (merged)" if batches is not None else ""
            result.mismatches.append(f"{holder}{merged}: manifest says {expected} rows, "
                                     f"file holds {actual}")

    for partition, ranges in sorted(spans.items()):
        ranges.sort()
        for (_, last), (first, _) in zip(ranges, ranges[1:]):
            if first > last + 1:
                result.gaps.append(f"partition {partition}: offsets {last + 1}-{first - 1} "
                                   "are not in the lake")
            elif first <= last:
                result.mismatches.append(f"partition {partition}: offsets from {first} "
                                         "committed twice")
    return result


class _Holders:
    """Which file holds a batch's rows of one table and hour: its own file, or when a
    compaction replaced that one, the merged file that took the batch in."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.visible: dict[str, set[str]] = {}  # folder -> files readers count
        self.batches: dict[str, list[list[int]]] = {}  # merged file -> its batches

    def find(self, relative: str, first: int, last: int) -> str:
        folder = relative.rsplit("/", 1)[0]
        if folder not in self.visible:
            self._list(folder)
        if relative in self.visible[folder]:
            return relative
        for path in self.visible[folder]:
            if (path in self.batches and file_prefix(path) == file_prefix(relative)
                    and [first, last] in self.batches[path]):
                return path
        return relative  # missing: reported by its own name

    def _list(self, folder: str) -> None:
        root = self.lake.path("")
        self.visible[folder] = {
            f[len(root):] for f in readable_files(self.lake, self.lake.path(folder))}
        for path in self.visible[folder]:
            if path.endswith(SUFFIX):
                with self.lake.fs.open_input_file(self.lake.path(path)) as handle:
                    self.batches[path] = merged_batches(pq.read_schema(handle)) or []
