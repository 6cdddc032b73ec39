"""The dataflow's sink: hour-partitioned Parquet, written exactly once per topic record.

One sink partition per topic partition. It buffers processed batches, and on a flush
splits them by UTC hour (event time for rows; for quarantined lines the event time of a
parsed neighbour, else the broker's record time), writes one file per hour and table
(staged on a local disk, under its final name on object storage), commits the batch to
the manifest, then publishes the files (see `lake/manifest.py`). A flush happens when
the buffer holds the partition's share of `BUFFER_ROWS`, once its oldest record has waited
`commit_seconds` (checked at every batch, an idle partition's empty ones included, and at
every snapshot), and when the input ends. A crash loses nothing buffered: the next run
reads the topic again from the lake's last commit.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from logstack_dagster.lake.layout import (
    QUARANTINE,
    ROWS,
    Lake,
    hour_dir,
    iso_hour,
    parquet_bytes,
    split_by_hour,
)
from logstack_dagster.lake.manifest import Commit, FileEntry, Manifest, merge_ranges
from logstack_dagster.streaming.batch import ProcessedBatch

log = logging.getLogger(__name__)

# Rows buffered before a write, for all the partitions of a topic together: each partition
# holds up to its share in its buffer and as much again in the write under way, so the
# rows held do not grow with the number of partitions until a share is down to one poll.
# Known limit: each partition still has its own writer and client buffers, so a process
# reading many partitions holds more (16 of them on a 1M-line log: 1.03 GiB).
BUFFER_ROWS = 200_000
MIN_FLUSH_ROWS = 20_000
# How long records may wait in a buffer that is not full. A flush at every snapshot (5 s)
# made a partition followed at a few lines a second write 720 small files an hour.
COMMIT_SECONDS = 60.0


def flush_rows_for(partitions: int) -> int:
    """The rows a partition of a topic of `partitions` partitions buffers before a write."""
    return max(MIN_FLUSH_ROWS, BUFFER_ROWS // max(partitions, 1))


FAILED_CLOSES: list[OSError] = []
"""Errors of final flushes in this process, which Bytewax would not let us raise."""


def partition_key(partition: int) -> str:
    """The routing key of a topic partition; zero-padded so that keys sort as numbers."""
    return f"{partition:05d}"


class LakeSink(FixedPartitionedSink[ProcessedBatch, None]):
    """Writes `(partition_key, ProcessedBatch)` items into the lake under the manifest."""

    def __init__(self, lake_uri: str, cluster: str, topic: str, partitions: int,
                 run_id: str, flush_rows: int | None = None,
                 commit_seconds: float | None = None):
        self.lake_uri = lake_uri
        self.cluster = cluster
        self.topic = topic
        self.partitions = partitions
        self.run_id = run_id
        self.flush_rows = flush_rows or flush_rows_for(partitions)
        self.commit_seconds = COMMIT_SECONDS if commit_seconds is None else commit_seconds

    def list_parts(self) -> list[str]:
        return [partition_key(p) for p in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> LakePartition:
        manifest = Manifest(Lake.open(self.lake_uri), self.cluster, self.topic)
        return LakePartition(manifest, int(for_part), self.run_id, self.flush_rows,
                             self.commit_seconds)


class LakePartition(StatefulSinkPartition[ProcessedBatch, None]):
    """The writer of one topic partition's records.

    A full buffer is written by a thread of the partition's own while the worker goes on
    parsing: Parquet encoding and file writes leave Python's interpreter lock, so one
    worker keeps two cores busy. At most one write is under way, so commits follow one
    another in offset order; the next write and the close wait for it, and raise what it
    raised.
    """

    def __init__(self, manifest: Manifest, partition: int, run_id: str, flush_rows: int,
                 commit_seconds: float = COMMIT_SECONDS):
        self.manifest = manifest
        self.partition = partition
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.commit_seconds = commit_seconds
        self.buffer: list[ProcessedBatch] = []
        self.buffered = 0
        self.buffered_since = 0.0  # when the oldest buffered batch came
        self.writer = ThreadPoolExecutor(1, thread_name_prefix=f"lake-{partition}")
        self.writing: Future | None = None

        # What a crash interrupted was finished or undone by the runner, for every partition,
        # before the dataflow started (`run.run_flow`).
        self.committed = manifest.committed_ranges(partition)

    def write_batch(self, values: list[ProcessedBatch]) -> None:
        for batch in values:
            if self.committed:
                batch = batch.without_offsets(self.committed)
            if batch.records:
                if not self.buffer:
                    self.buffered_since = time.monotonic()
                self.buffer.append(batch)
                self.buffered += batch.records
        if self.buffered >= self.flush_rows:
            self.flush(wait=False)
        else:
            # Also on an idle partition's empty batches, which come every second or so.
            self._flush_if_waited()

    def snapshot(self) -> None:
        self._flush_if_waited()

    def _flush_if_waited(self) -> None:
        """Write the buffer once its oldest record has waited `commit_seconds`, and raise
        what a finished write raised, rather than wait for more records to come."""
        if self.writing is not None and self.writing.done():
            self._wait()
        if self.buffer and time.monotonic() - self.buffered_since >= self.commit_seconds:
            self.flush(wait=False)

    def close(self) -> None:
        # Bytewax 0.21 also calls close() while unwinding from a failed write, where a
        # second exception aborts the process with a panic instead of the first error's
        # message. Nothing is lost by swallowing it: what is not committed is read again
        # by the next run. The runner reports `FAILED_CLOSES` as the run's failure.
        try:
            self.flush()
        except OSError as exc:
            log.error("partition %d: the last batch was not written to the lake: %s",
                      self.partition, exc)
            FAILED_CLOSES.append(exc)
        finally:
            self.writer.shutdown(wait=True)

    def flush(self, wait: bool = True) -> None:
        """Write, commit and publish everything buffered: at once, or with `wait` False in
        the writer thread, after the write under way."""
        self._wait()
        if self.buffer:
            batches, self.buffer, self.buffered = self.buffer, [], 0
            self.writing = self.writer.submit(self._write, batches)
        if wait:
            self._wait()

    def _wait(self) -> None:
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()

    def _write(self, batches: list[ProcessedBatch]) -> None:
        started = time.monotonic()
        rows = pa.concat_tables([b.rows for b in batches])
        quarantine = pa.concat_tables([b.quarantine for b in batches])
        first = min(b.offset_bounds()[0] for b in batches)
        last = max(b.offset_bounds()[1] for b in batches)

        commit = Commit(
            cluster=self.manifest.cluster, topic=self.manifest.topic, partition=self.partition,
            first_offset=first, last_offset=last, records=rows.num_rows + quarantine.num_rows,
            rows=rows.num_rows, quarantined=quarantine.num_rows, run_id=self.run_id,
            log_format=batches[-1].log_format,
        )
        # A line that did not parse is filed under the hour of its parsed neighbours, or
        # under the time the broker took it when it has none.
        filed = pc.coalesce(quarantine.column("neighbour_time"),
                            quarantine.column("record_time").cast(pa.timestamp("us", "UTC")))
        parts = [*_by_hour(ROWS, rows, rows.column("event_time"), commit.batch_name),
                 *_by_hour(QUARANTINE, quarantine, filed, commit.batch_name)]
        self.manifest.begin(commit, [relative for relative, _, _ in parts])
        for relative, hour, table in parts:
            data = parquet_bytes(table)
            self.manifest.lake.write_atomic(self.manifest.write_path(commit, relative), data)
            commit.files.append(FileEntry(table=relative.split("/", 1)[0], path=relative,
                                          hour=iso_hour(hour), rows=table.num_rows,
                                          bytes=len(data)))

        self.manifest.commit(commit)
        self.manifest.publish(commit)
        self.committed = merge_ranges([*self.committed, (first, last)])
        log.info(
            "partition %d: offsets %d-%d, %d rows, %d quarantined, %d files in %.2f s",
            self.partition, first, last, commit.rows, commit.quarantined, len(commit.files),
            time.monotonic() - started,
        )


def _by_hour(table_name: str, table: pa.Table, times: pa.ChunkedArray,
             name: str) -> list[tuple[str, datetime, pa.Table]]:
    """Split `table` by the UTC hour of `times` (one per row): for each hour, the file's
    path from the lake root, the hour and its rows."""
    return [(f"{table_name}/{hour_dir(hour)}/{name}.parquet", hour, rows)
            for hour, rows in split_by_hour(table, times)]
