"""Send quarantined lines through the parser again, after a format fix, without doubles.

The quarantine files are never rewritten. A line that parses now becomes a row in a
`requeue-<digest>.parquet` file of the requests table, in the hour of its own event
time, and keeps its topic, partition and offset. Readers treat a quarantined line whose
coordinates appear in such a file as resolved (`without_requeued`), so every record is
still counted once: as a row if it was ever parsed, as a quarantined line otherwise.

The digest names the set of coordinates a file holds, so running the same requeue twice,
or again after a crash half-way through, writes the same files under the same names and
picks up what is left: lines already resolved are skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from logstack_dagster.lake.layout import (
    QUARANTINE,
    ROWS,
    Lake,
    hour_dir,
    parquet_bytes,
    split_by_hour,
)

if TYPE_CHECKING:
    from logstack_dagster.settings import Settings

PREFIX = "requeue-"
# Written before the first requeue file, so that readers know to look for them.
MARKER = "_requeue/requeued"


def requeued_glob(lake: Lake) -> str:
    """The DuckDB glob of every requeue file in the requests table."""
    return lake.glob(ROWS).removesuffix("*.parquet") + f"{PREFIX}*.parquet"


def has_requeued(lake: Lake) -> bool:
    """Whether a requeue ever wrote to this lake (a marker, so readers need not list)."""
    return lake.exists(lake.path(MARKER))


def without_requeued(source: str, lake: Lake, requeued: list[str] | None = None) -> str:
    """`source`, a table expression over quarantined lines, less the lines resolved since.

    `requeued` names the requeue files when the caller has listed them; else they are
    globbed, if a requeue ever ran."""
    if requeued is None:
        if not has_requeued(lake):
            return source
        files = "'" + requeued_glob(lake).replace("'", "''") + "'"
    elif requeued:
        from logstack_dagster.lake.duck import sql_list

        files = sql_list(requeued)
    else:
        return source
    return (f'(SELECT q.* FROM {source} AS q ANTI JOIN (SELECT topic, "partition", "offset" '
            f"FROM read_parquet({files})) AS r USING (topic, \"partition\", \"offset\"))")


def is_requeue_file(path: str) -> bool:
    """Whether `path` is a file `requeue` wrote."""
    return path.rsplit("/", 1)[-1].startswith(PREFIX)


@dataclass
class RequeueResult:
    """What a requeue found and did."""

    examined: int = 0
    parsed: int = 0
    still_rejected: int = 0
    files: list[str] = field(default_factory=list)
    hours: set[datetime] = field(default_factory=set)
    """Hours whose metrics change: those of the new rows and of the lines they leave."""
    absent_reasons: list[str] = field(default_factory=list)
    """Reasons asked for that no unresolved quarantined line has."""
    present_reasons: list[str] = field(default_factory=list)
    """The reasons the unresolved quarantined lines have, when some asked for are absent."""


def requeue(lake: Lake, log_format: str | None, *, settings: Settings | None = None,
            reasons: list[str] | None = None, dry_run: bool = False) -> RequeueResult:
    """Parse the unresolved quarantined lines with `log_format` (None: detect it).

    The new rows are enriched as the dataflow would, with `settings`' GeoIP databases
    and site hosts; without `settings`, they keep the parser's columns only and the
    enrichment columns are null. `reasons` limits the lines to those quarantined for one
    of these reason codes. With `dry_run`, count what would parse and write nothing.
    """
    from logstack_dagster.lake.duck import register_views

    conn = duckdb.connect()
    register_views(conn, lake)
    where = ""
    if reasons:
        listed = ", ".join("'" + r.replace("'", "''") + "'" for r in reasons)
        where = f"WHERE reason IN ({listed})"
    pending = conn.sql(f"""
        SELECT topic, "partition", "offset", epoch_ms(record_time) AS ms, raw,
               coalesce(neighbour_time, record_time) AS filed, reason
        FROM {QUARANTINE} {where} ORDER BY topic, "partition", "offset"
    """).to_arrow_table()

    result = RequeueResult(examined=pending.num_rows)
    found = set(pc.unique(pending.column("reason")).to_pylist())
    result.absent_reasons = [r for r in reasons or [] if r not in found]
    if result.absent_reasons:
        result.present_reasons = sorted(
            r for (r,) in conn.sql(f"SELECT DISTINCT reason FROM {QUARANTINE}").fetchall())
    if pending.num_rows == 0:
        return result
    processor = _processor(log_format, settings)
    parsed_parts = []
    try:
        for (topic, partition), group in _by_partition(pending):
            batch = processor(_raw_batch(topic, partition, group))
            result.still_rejected += batch.quarantine.num_rows
            if batch.rows.num_rows:
                parsed_parts.append(batch.rows)
                left = group.filter(pc.is_in(group.column("offset"), batch.rows.column("offset")))
                result.hours.update(hour for hour, _ in split_by_hour(left, left.column("filed")))
    finally:
        if processor.enricher is not None:
            processor.enricher.close()
    if not parsed_parts:
        return result

    rows = pa.concat_tables(parsed_parts)
    result.parsed = rows.num_rows
    if not dry_run:
        lake.write_atomic(lake.path(MARKER), b"requeue files exist in requests/\n")
    for hour, in_hour in split_by_hour(rows, rows.column("event_time")):
        result.hours.add(hour)
        path = lake.path(ROWS, hour_dir(hour), f"{PREFIX}{_digest(in_hour)}.parquet")
        result.files.append(path)
        if not dry_run:
            lake.write_atomic(path, parquet_bytes(in_hour))
    return result


def _processor(log_format: str | None, settings: Settings | None):
    from logstack_dagster.enrichment.pipeline import RowEnricher
    from logstack_dagster.streaming.dataflow import BatchProcessor

    if settings is None:
        return BatchProcessor(log_format, None)
    return BatchProcessor(log_format, RowEnricher(
        settings.geoip_city_db, settings.geoip_asn_db, settings.site_hosts))


def _by_partition(pending: pa.Table):
    keys = pending.select(["topic", "partition"]).to_pylist()
    start = 0
    for end in range(1, len(keys) + 1):
        if end == len(keys) or keys[end] != keys[start]:
            yield (keys[start]["topic"], keys[start]["partition"]), pending.slice(
                start, end - start)
            start = end


def _raw_batch(topic: str, partition: int, group: pa.Table):
    from logstack_dagster.streaming.batch import RawBatch

    return RawBatch(topic=topic, partition=partition,
                    offsets=group.column("offset").to_pylist(),
                    timestamps=group.column("ms").to_pylist(),
                    values=group.column("raw").to_pylist())


def _digest(rows: pa.Table) -> str:
    coordinates = sorted(zip(rows.column("topic").to_pylist(),
                             rows.column("partition").to_pylist(),
                             rows.column("offset").to_pylist()))
    text = "\n".join(f"{t}\t{p}\t{o}" for t, p, o in coordinates)
    return hashlib.sha256(text.encode()).hexdigest()[:20]

