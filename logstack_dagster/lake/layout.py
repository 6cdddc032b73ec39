"""Where things live in the lake, on a local disk or any pyarrow filesystem URI.

    <root>/requests/year=YYYY/month=MM/day=DD/hour=HH/<batch>.parquet   parsed rows
    <root>/quarantine/year=.../hour=HH/<batch>.parquet                  rejected lines
    <root>/_manifest/<cluster>/<topic>/partition=N/<first>-<last>.json  commit records
    <root>/_staging/<batch>/...        on a local disk: files not yet committed
    <root>/_staging/<batch>.json       on object storage: files being written, not committed
    <root>/_compaction/<pass>.json     merges of small files under way (see `compact.py`)
    <root>/_locks/compact.lock         on a local disk: one compaction at a time
    <root>/_locks/<cluster>/<topic>.ingest.lock   on a local disk: one dataflow per topic

Hours are UTC. A row's hour is its event time. A quarantined line has no trusted time of
its own: it goes to the hour of the nearest line that parsed in the same batch (lines of
a partition are in log order), or, when none did, to the time the broker stamped on it.

A local disk renames atomically, so a batch is staged and then moved into place. Object
storage (S3 and the like) has no rename, only whole-object writes: there each file is
written once under its final name, and a note in `_staging` names it until the batch is
committed (see `manifest.py`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from logstack_dagster.errors import LogstackError

ROWS = "requests"
QUARANTINE = "quarantine"
MANIFEST = "_manifest"
STAGING = "_staging"
COMPACTION = "_compaction"

# pyarrow accepts these in a URI's query; logstack takes credentials from the standard
# AWS variables only, so that no URI it prints or stores can carry them.
_CREDENTIAL_OPTIONS = {"access_key", "secret_key", "session_token", "role_arn",
                       "external_id"}


class LakeError(LogstackError):
    """The lake's root cannot be opened or used."""


@dataclass(frozen=True)
class Lake:
    """A lake root opened on its filesystem."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @classmethod
    def open(cls, uri: str) -> Lake:
        """Open a local path or a URI such as `s3://bucket/prefix`, creating the root.

        Raises `LakeError` when the URI carries credentials or its filesystem refuses it
        (an unknown scheme, a missing bucket, no such endpoint).
        """
        if "://" in uri:
            query = uri.partition("?")[2]
            named = sorted({k for k, _ in parse_qsl(query)} & _CREDENTIAL_OPTIONS)
            if named:
                raise LakeError(
                    f"LOGSTACK_LAKE must not carry credentials ({', '.join(named)}): set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead")
        try:
            if "://" in uri:
                fs, root = pafs.FileSystem.from_uri(uri)
                if not root.strip("/"):
                    raise ValueError("it names no bucket or folder")
            else:
                fs, root = pafs.LocalFileSystem(), _local_root(uri)
            # Only when missing: a reader with read-only credentials opens the lake too.
            if fs.get_file_info(root).type == pafs.FileType.NotFound:
                fs.create_dir(root, recursive=True)
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LakeError(f"cannot open the lake at {uri}: {reason}") from None
        return cls(fs=fs, root=root.rstrip("/"), uri=uri)

    @property
    def local(self) -> bool:
        """Whether the lake is on a local disk, where a move is an atomic rename."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def scheme(self) -> str:
        """The URI scheme readers use for the lake's paths (`s3`), or '' on a local disk."""
        return "" if self.local else self.uri.split("://", 1)[0]

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def url(self, path: str) -> str:
        """`path` on the lake's filesystem as DuckDB names it: `s3://bucket/key` or a path."""
        return path if self.local else f"{self.scheme}://{path}"

    def glob(self, table: str) -> str:
        """The Parquet glob of `table` for DuckDB.

        A glob also matches files of batches still being written (on object storage) and
        both sides of a compaction's swap; readers that count rows list complete files
        instead (`duck.complete_files`).
        """
        return self.url(f"{self.root}/{table}/*/*/*/*/*.parquet")

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def list_files(self, folder: str, recursive: bool = False) -> list[str]:
        """Paths of the files inside `folder` (and below, if `recursive`), sorted; empty
        when it is missing."""
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=recursive)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def list_dirs(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write `data` to `path` so that readers see the old state or the whole new one.

        On a local disk through a temporary file and a rename. On object storage one
        write is one object, which appears whole when the upload completes.
        """
        if not self.local:
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        temporary = f"{path}.tmp"
        with self.fs.open_output_stream(temporary) as out:
            out.write(data)
        self.fs.move(temporary, path)

    def delete_if_present(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass


# The last hour Python's datetime holds: it has no next hour.
LAST_HOUR = datetime(9999, 12, 31, 23, tzinfo=timezone.utc)


def hour_dir(hour: datetime) -> str:
    """Hive-style folder of the UTC hour that starts at `hour`."""
    hour = hour.astimezone(timezone.utc)
    # Four digits, as Hive and ISO write them (`%Y` gives `1` for the year 1 here).
    return f"year={hour.year:04d}/month={hour:%m}/day={hour:%d}/hour={hour:%H}"


# Runs (stretches of rows of one hour) in a table above which `split_by_hour` sorts rather
# than slices: each slice becomes a chunk of its hour's columns, and many small chunks
# write slowly.
MAX_RUNS = 256


def split_by_hour(table: pa.Table, times: pa.ChunkedArray) -> Iterator[tuple[datetime, pa.Table]]:
    """`table`'s rows grouped by the UTC hour of `times` (one time per row): each hour,
    as an aware UTC datetime, with its rows in their order."""
    if table.num_rows == 0:
        return
    if times.type.tz not in (None, "UTC"):
        # Arrow floors a zoned time to the hours of its zone (XX:30 UTC in India), and
        # DuckDB hands times over in the session's zone.
        times = times.cast(pa.timestamp(times.type.unit, "UTC"))
    hours = pc.floor_temporal(times, unit="hour")
    hours = hours.combine_chunks() if isinstance(hours, pa.ChunkedArray) else hours
    # Logs mostly arrive in time order: the rows of an hour are a few runs, each a zero-copy
    # slice. Sorting and copying the whole table whenever a few lines came late cost the
    # 4-partition 1M-line generated log (36 late stretches) 2.0 against 1.55 CPU s in the
    # writers and 130 MB more peak memory.
    runs = pc.run_end_encode(hours)
    values, ends = runs.values.to_pylist(), runs.run_ends.to_pylist()
    if len(values) > MAX_RUNS:
        order = pc.sort_indices(hours)  # stable: an hour's rows keep their order
        table, hours = table.take(order), hours.take(order)
        runs = pc.run_end_encode(hours)
        values, ends = runs.values.to_pylist(), runs.run_ends.to_pylist()
    pieces: dict[datetime, list[tuple[int, int]]] = {}
    start = 0
    for hour, end in zip(values, ends, strict=True):
        pieces.setdefault(hour, []).append((start, end - start))
        start = end
    for hour in sorted(pieces):
        slices = [table.slice(offset, length) for offset, length in pieces[hour]]
        rows = slices[0] if len(slices) == 1 else pa.concat_tables(slices)
        yield (hour.astimezone(timezone.utc) if hour.tzinfo
               else hour.replace(tzinfo=timezone.utc)), rows


# Columns whose min/max are worth keeping in each row group (queries filter by time, status
# and source offset); computing them for every long string column cost a third of the
# encoding and filtered nothing.
STATISTICS_COLUMNS = ("event_time", "status_code", "partition", "offset", "record_time")


def parquet_bytes(table: pa.Table) -> bytes:
    """One lake file's content: `table` as zstd-compressed Parquet."""
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=128 * 1024,
                   write_statistics=[c for c in STATISTICS_COLUMNS if c in table.column_names])
    return out.getvalue()


def parquet_rows(lake: Lake, path: str) -> int | None:
    """The rows the Parquet file at `path` holds, from its footer; None when it is missing
    or no Parquet file."""
    try:
        with lake.fs.open_input_file(path) as handle:
            return pq.read_metadata(handle).num_rows
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def hour_key(hour: datetime) -> str:
    """The Dagster partition key of an hour (`YYYY-MM-DD-HH:00`, UTC)."""
    hour = hour.astimezone(timezone.utc)
    return f"{hour.year:04d}-{hour:%m-%d-%H}:00"


def shown_hour(hour: datetime) -> str:
    """An hour as messages show it (`YYYY-MM-DD HH:00`, UTC; four-digit years)."""
    hour = hour.astimezone(timezone.utc)
    return f"{hour.year:04d}-{hour:%m-%d %H}:00"


def iso_hour(hour: datetime) -> str:
    """An hour as the manifest lists it (`YYYY-MM-DDTHH:00:00Z`, UTC)."""
    hour = hour.astimezone(timezone.utc)
    return f"{hour.year:04d}-{hour:%m-%dT%H}:00:00Z"


def _local_root(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))
