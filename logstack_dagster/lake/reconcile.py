"""Reconciling the lake with its manifest: what the commit records say is what the files hold.

Reads only Parquet footers, so it is cheap enough to run after every ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from logstack_dagster.lake.compact import SUFFIX, merged_batches
from logstack_dagster.lake.duck import readable_files
from logstack_dagster.lake.layout import Lake
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
    holders = _Holders(manifest.lake)
    expected: dict[str, int] = {}  # file -> rows the commits put in it
    checked: set[str] = set()  # the files of the commits counted
    for commit in manifest.commits():
        spans.setdefault(commit.partition, []).append((commit.first_offset, commit.last_offset))
        counted = run_id is None or commit.run_id == run_id
        if counted:
            result.records += commit.records
            result.rows += commit.rows
            result.quarantined += commit.quarantined
            if commit.records != commit.rows + commit.quarantined:
                result.mismatches.append(
                    f"{commit.batch_name}: {commit.records} records but {commit.rows} rows "
                    f"+ {commit.quarantined} quarantined")
        for entry in commit.files:
            holder = holders.find(entry.path, commit.first_offset, commit.last_offset)
            expected[holder] = expected.get(holder, 0) + entry.rows
            if counted:
                result.files += 1
                checked.add(holder)
    for holder in sorted(checked):
        actual = _rows_in(manifest, holder)
        if actual != expected[holder]:
            merged = " (merged)" if holder.endswith(SUFFIX) else ""
            result.mismatches.append(f"{holder}{merged}: manifest says {expected[holder]} "
                                     f"rows, file holds {actual}")

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
    """Which file holds a commit's rows of one table and hour: its own file, or when a
    compaction replaced that one, the merged file that took the commit's batch in."""

    def __init__(self, lake: Lake):
        self.lake = lake
        self.folders: dict[str, tuple[set[str], dict[str, list[list[int]]]]] = {}

    def find(self, relative: str, first: int, last: int) -> str:
        folder, name = relative.rsplit("/", 1)
        visible, merged = self._folder(folder)
        if relative in visible:
            return relative
        prefix = name.rsplit("-", 2)[0]
        for path, batches in merged.items():
            if path.rsplit("/", 1)[1].startswith(prefix + "-") and [first, last] in batches:
                return path
        return relative  # missing: reported by its own name

    def _folder(self, folder: str) -> tuple[set[str], dict[str, list[list[int]]]]:
        if folder not in self.folders:
            root = self.lake.path("")
            visible = {f[len(root):] for f in readable_files(self.lake, self.lake.path(folder))}
            merged = {}
            for path in visible:
                if path.endswith(SUFFIX):
                    with self.lake.fs.open_input_file(self.lake.path(path)) as handle:
                        merged[path] = merged_batches(pq.read_schema(handle)) or []
            self.folders[folder] = (visible, merged)
        return self.folders[folder]


def _rows_in(manifest: Manifest, relative: str) -> int | None:
    lake = manifest.lake
    try:
        with lake.fs.open_input_file(lake.path(relative)) as handle:
            return pq.read_metadata(handle).num_rows
    except FileNotFoundError:
        return None
