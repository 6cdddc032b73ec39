"""The Bytewax dataflow: topic records in, parsed and enriched lake rows out.

    read_topic -> group_partitions -> parse_enrich -> write_lake

`build_flow` takes its source and sink, so tests can hand it testing ones and the
runner real ones (`TopicSource` and `LakeSink`). The source may emit Kafka messages or
whole RawBatches; `TopicSource` emits RawBatches, which skips the per-record objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import bytewax.operators as op
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.parser import LogFormat, parse_lines, resolve_format
from logstack_dagster.parser.presets import format_spec
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA, ProcessedBatch, RawBatch
from logstack_dagster.streaming.sink import partition_key

log = logging.getLogger(__name__)


def build_flow(source: Source, sink: Sink, processor: BatchProcessor) -> Dataflow:
    """The ingest dataflow from `source` (Kafka messages) to `sink` (keyed batches)."""
    flow = Dataflow("logstack_ingest")
    messages = op.input("read_topic", flow, source)
    raw = op.flat_map_batch("group_partitions", messages, group_by_partition)
    processed = op.map_value("parse_enrich", raw, processor)
    op.output("write_lake", processed, sink)
    return flow


def group_by_partition(
    messages: list[KafkaSourceMessage | RawBatch],
) -> Iterable[tuple[str, RawBatch]]:
    """Turn a list of messages into one RawBatch per topic partition, keyed for the sink;
    RawBatches pass through as they are."""
    groups: dict[tuple[str, int], RawBatch] = {}
    ready: list[tuple[str, RawBatch]] = []
    for message in messages:
        if isinstance(message, RawBatch):
            ready.append((partition_key(message.partition), message))
            continue
        if isinstance(message, KafkaError):
            raise RuntimeError(f"reading the topic failed: {message.err}")
        key = (message.topic, message.partition)
        batch = groups.get(key)
        if batch is None:
            batch = groups[key] = RawBatch(message.topic, message.partition, [], [], [])
        batch.offsets.append(message.offset)
        batch.timestamps.append(message.timestamp[1] if message.timestamp else 0)
        batch.values.append(message.value or b"")
    return ready + [(partition_key(b.partition), b) for b in groups.values()]


class BatchProcessor:
    """Parses and enriches one RawBatch; every record leaves as a row or a quarantined line.

    `log_format` is a preset name, a LogFormat string, or None to detect the format from
    the first batch of each partition and keep it for the rest of the run. `known` gives
    the formats earlier runs used, by partition: a resumed partition keeps its format
    rather than detecting one from wherever it resumes. `enricher` adds the columns of
    `ENRICHMENT_SCHEMA`; None leaves the parsed rows as they are.
    """

    def __init__(self, log_format: str | None, enricher: RowEnricher | None,
                 known: dict[int, str] | None = None):
        self.fixed_format = resolve_format(log_format) if log_format else None
        self.detected: dict[int, LogFormat | str] = {
            partition: resolve_format(spec) for partition, spec in (known or {}).items()}
        self.enricher = enricher

    def __call__(self, raw: RawBatch) -> ProcessedBatch:
        if not raw.offsets and not raw.values:
            # An idle partition's tick (see `source.IDLE_TICK`): nothing to parse.
            return ProcessedBatch(raw.topic, raw.partition, pa.table({}), pa.table({}))
        fmt = self.fixed_format or self.detected.get(raw.partition)
        result = parse_lines(raw.values, fmt)
        if fmt is None and result.rows.num_rows:
            self.detected[raw.partition] = result.log_format or result.format_name
            log.info("partition %d: detected the %s format", raw.partition,
                     result.format_name)

        offsets = pa.array(raw.offsets, pa.int64())
        times = pa.array(raw.timestamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        rows = result.rows
        if self.enricher is not None:
            # Also when nothing parsed: every batch's rows must have the same columns, or
            # the sink cannot put the batches of one flush together.
            rows = self.enricher.enrich(rows)
        rows = _with_source(rows, raw, offsets).drop_columns(["line_index"])
        quarantine = _quarantine(raw, result.rejects, offsets, times, result.format_name,
                                 result.rows)
        used = result.log_format
        spec = format_spec(used) if used is not None else result.format_name
        return ProcessedBatch(raw.topic, raw.partition, rows, quarantine, spec)


def _with_source(table: pa.Table, raw: RawBatch, offsets: pa.Array) -> pa.Table:
    """Append the topic, partition and offset of each row's record."""
    index = table.column("line_index")
    count = table.num_rows
    table = table.append_column("topic", pa.repeat(pa.scalar(raw.topic, pa.string()), count))
    table = table.append_column(
        "partition", pa.repeat(pa.scalar(raw.partition, pa.int32()), count))
    return table.append_column("offset", pc.take(offsets, index))


def _quarantine(raw: RawBatch, rejects: pa.Table, offsets: pa.Array, times: pa.Array,
                format_name: str, parsed: pa.Table) -> pa.Table:
    """The rejected records with their reason, raw bytes and source coordinates."""
    if rejects.num_rows == 0:
        return QUARANTINE_SCHEMA.empty_table()
    index = rejects.column("line_index").combine_chunks()
    values = [raw.values[i] for i in index.to_pylist()]
    count = len(values)
    return pa.table({
        "topic": pa.array([raw.topic] * count, pa.string()),
        "partition": pa.array([raw.partition] * count, pa.int32()),
        "offset": pc.take(offsets, index),
        "record_time": pc.take(times, index),
        "neighbour_time": _neighbour_times(index, parsed),
        "reason": rejects.column("reason"),
        "message": rejects.column("message"),
        "format": pa.array([format_name] * count, pa.string()),
        "raw": pa.array(values, pa.binary()),
        "raw_text": pa.array([v.decode("utf-8", "backslashreplace") for v in values],
                             pa.string()),
    }, schema=QUARANTINE_SCHEMA)


def _neighbour_times(rejected: pa.Array, parsed: pa.Table) -> pa.Array:
    """For each rejected line, the event time of the nearest parsed line before it (else
    after it) in the batch: the best guess of when it was logged, so that a line that did
    not parse is counted in the hour it belongs to. Null when nothing in the batch parsed.
    """
    kind = QUARANTINE_SCHEMA.field("neighbour_time").type
    if parsed.num_rows == 0:
        return pa.nulls(len(rejected), kind)
    positions = parsed.column("line_index").to_numpy()
    stamps = parsed.column("event_time").cast(kind)
    order = np.argsort(positions, kind="stable")
    at = np.searchsorted(positions[order], rejected.to_numpy(zero_copy_only=False), "left")
    return pc.take(stamps, pa.array(order[np.maximum(at - 1, 0)])).combine_chunks()
