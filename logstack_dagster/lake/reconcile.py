"""Reconciling the lake with its manifest: what the commit records say is what the files hold.

Reads only Parquet footers, so it is cheap enough to run after every ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

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
    the rows its commit says, and the committed offsets of a partition must have no holes.
    """
    result = Reconciliation()
    spans: dict[int, list[tuple[int, int]]] = {}
    for commit in manifest.commits():
        spans.setdefault(commit.partition, []).append((commit.first_offset, commit.last_offset))
        if run_id is not None and commit.run_id != run_id:
            continue
        result.records += commit.records
        result.rows += commit.rows
        result.quarantined += commit.quarantined
        if commit.records != commit.rows + commit.quarantined:
            result.mismatches.append(f"{commit.batch_name}: {commit.records} records but "
                                     f"{commit.rows} rows + {commit.quarantined} quarantined")
        for entry in commit.files:
            result.files += 1
            actual = _rows_in(manifest, entry.path)
            if actual != entry.rows:
                result.mismatches.append(f"{entry.path}: manifest says {entry.rows} rows, "
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


def _rows_in(manifest: Manifest, relative: str) -> int | None:
    lake = manifest.lake
    try:
        with lake.fs.open_input_file(lake.path(relative)) as handle:
            return pq.read_metadata(handle).num_rows
    except FileNotFoundError:
        return None
