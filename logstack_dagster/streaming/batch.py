"""The unit the dataflow moves: the records of one topic partition, parsed and enriched.

Moving whole batches instead of single lines keeps Bytewax's per-item cost off the hot
path; parsing and enrichment work on the batch's columns at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

QUARANTINE_SCHEMA = pa.schema([
    ("topic", pa.string()),
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("record_time", pa.timestamp("ms", tz="UTC")),
    ("neighbour_time", pa.timestamp("us", tz="UTC")),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("format", pa.string()),
    ("raw", pa.binary()),
    ("raw_text", pa.string()),
])


@dataclass
class RawBatch:
    """Records of one partition as read from the topic, in offset order."""

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]
    values: list[bytes]


@dataclass
class ProcessedBatch:
    """One RawBatch turned into lake rows and quarantined lines.

    `rows` and `quarantine` both carry `topic`, `partition` and `offset`; together they
    hold every offset of the batch exactly once.
    """

    topic: str
    partition: int
    rows: pa.Table
    quarantine: pa.Table
    log_format: str = ""  # the format the batch was parsed with, as `resolve_format` takes

    @property
    def records(self) -> int:
        return self.rows.num_rows + self.quarantine.num_rows

    def offset_bounds(self) -> tuple[int, int]:
        """The lowest and the highest offset in the batch."""
        columns = [t.column("offset") for t in (self.rows, self.quarantine) if t.num_rows]
        both = pa.chunked_array([c for col in columns for c in col.chunks], pa.int64())
        bounds = pc.min_max(both)
        return bounds["min"].as_py(), bounds["max"].as_py()

    def without_offsets(self, ranges: list[tuple[int, int]]) -> ProcessedBatch:
        """The batch less every record whose offset lies in one of `ranges` (inclusive)."""
        return ProcessedBatch(
            self.topic, self.partition,
            _drop_ranges(self.rows, ranges), _drop_ranges(self.quarantine, ranges),
            self.log_format,
        )


def _drop_ranges(table: pa.Table, ranges: list[tuple[int, int]]) -> pa.Table:
    if not ranges or table.num_rows == 0:
        return table
    offsets = table.column("offset")
    # Past the first flush every batch is checked against what is committed, and almost
    # always lies beyond it: keep only the ranges that can hold one of its offsets.
    bounds = pc.min_max(offsets)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    ranges = [(first, last) for first, last in ranges if first <= high and last >= low]
    if not ranges:
        return table
    inside = None
    for first, last in ranges:
        hit = pc.and_(pc.greater_equal(offsets, first), pc.less_equal(offsets, last))
        inside = hit if inside is None else pc.or_(inside, hit)
    return table.filter(pc.invert(inside))
