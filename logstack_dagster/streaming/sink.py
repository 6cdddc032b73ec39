"""The dataflow's sink: hour-partitioned Parquet, written exactly once per topic record.

One sink partition per topic partition. It buffers processed batches, and on a flush
splits them by UTC hour (event time for rows; for quarantined lines the event time of a
parsed neighbour, else the broker's record time),
stages one file per hour and table, commits the batch to the manifest, then publishes
the files. A flush happens when the buffer is large, at each Bytewax snapshot (so that
what the recovery store says was read is also in the lake) and when the input ends.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from logstack_dagster.lake.layout import QUARANTINE, ROWS, STAGING, Lake, hour_dir
from logstack_dagster.lake.manifest import Commit, FileEntry, Manifest, merge_ranges
from logstack_dagster.streaming.batch import ProcessedBatch

log = logging.getLogger(__name__)

FLUSH_ROWS = 250_000


def partition_key(partition: int) -> str:
    """The routing key of a topic partition; zero-padded so that keys sort as numbers."""
    return f"{partition:05d}"


class LakeSink(FixedPartitionedSink[ProcessedBatch, None]):
    """Writes `(partition_key, ProcessedBatch)` items into the lake under the manifest."""

    def __init__(self, lake_uri: str, cluster: str, topic: str, partitions: int,
                 run_id: str, flush_rows: int = FLUSH_ROWS):
        self.lake_uri = lake_uri
        self.cluster = cluster
        self.topic = topic
        self.partitions = partitions
        self.run_id = run_id
        self.flush_rows = flush_rows

    def list_parts(self) -> list[str]:
        return [partition_key(p) for p in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> LakePartition:
        manifest = Manifest(Lake.open(self.lake_uri), self.cluster, self.topic)
        return LakePartition(manifest, int(for_part), self.run_id, self.flush_rows)


class LakePartition(StatefulSinkPartition[ProcessedBatch, None]):
    """The writer of one topic partition's records."""

    def __init__(self, manifest: Manifest, partition: int, run_id: str, flush_rows: int):
        self.manifest = manifest
        self.partition = partition
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.buffer: list[ProcessedBatch] = []
        self.buffered = 0

        undone = manifest.recover(partition)
        if undone:
            log.info("partition %d: removed %d uncommitted batches", partition, undone)
        self.committed = manifest.committed_ranges(partition)

    def write_batch(self, values: list[ProcessedBatch]) -> None:
        for batch in values:
            if self.committed:
                batch = batch.without_offsets(self.committed)
            if batch.records:
                self.buffer.append(batch)
                self.buffered += batch.records
        if self.buffered >= self.flush_rows:
            self.flush()

    def snapshot(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Write, commit and publish everything buffered."""
        if not self.buffer:
            return
        started = time.monotonic()
        batches, self.buffer, self.buffered = self.buffer, [], 0
        rows = pa.concat_tables([b.rows for b in batches])
        quarantine = pa.concat_tables([b.quarantine for b in batches])
        first = min(b.offset_bounds()[0] for b in batches)
        last = max(b.offset_bounds()[1] for b in batches)

        commit = Commit(
            cluster=self.manifest.cluster, topic=self.manifest.topic, partition=self.partition,
            first_offset=first, last_offset=last, records=rows.num_rows + quarantine.num_rows,
            rows=rows.num_rows, quarantined=quarantine.num_rows, run_id=self.run_id,
        )
        lake = self.manifest.lake
        staging = lake.path(STAGING, commit.batch_name)
        commit.files += _stage(lake, staging, ROWS, rows, rows.column("event_time"),
                               commit.batch_name)
        # A line that did not parse is filed under the hour of its parsed neighbours, or
        # under the time the broker took it when it has none.
        filed = pc.coalesce(quarantine.column("neighbour_time"),
                            quarantine.column("record_time").cast(pa.timestamp("us", "UTC")))
        commit.files += _stage(lake, staging, QUARANTINE, quarantine, filed, commit.batch_name)

        self.manifest.commit(commit)
        self.manifest.publish(commit)
        self.committed = merge_ranges([*self.committed, (first, last)])
        log.info(
            "partition %d: offsets %d-%d, %d rows, %d quarantined, %d files in %.2f s",
            self.partition, first, last, commit.rows, commit.quarantined, len(commit.files),
            time.monotonic() - started,
        )


def _stage(lake: Lake, staging: str, table_name: str, table: pa.Table, times: pa.ChunkedArray,
           name: str) -> list[FileEntry]:
    """Write one Parquet file per UTC hour of `times` (one per row of `table`) under
    `staging`; describe each."""
    if table.num_rows == 0:
        return []
    hours = pc.floor_temporal(times, unit="hour")
    entries = []
    for hour in pc.unique(hours).to_pylist():
        hour_rows = table.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
        hour_utc = hour.astimezone(timezone.utc) if hour.tzinfo else hour.replace(
            tzinfo=timezone.utc)
        relative = f"{table_name}/{hour_dir(hour_utc)}/{name}.parquet"
        data = _parquet_bytes(hour_rows)
        lake.write_atomic(f"{staging}/{relative}", data)
        entries.append(FileEntry(table=table_name, path=relative, hour=_iso_hour(hour_utc),
                                 rows=hour_rows.num_rows, bytes=len(data)))
    return entries


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=128 * 1024)
    return sink.getvalue()


def _iso_hour(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H:00:00Z")
