"""Where things live in the lake, on a local disk or any pyarrow filesystem URI.

    <root>/requests/year=YYYY/month=MM/day=DD/hour=HH/<batch>.parquet   parsed rows
    <root>/quarantine/year=.../hour=HH/<batch>.parquet                  rejected lines
    <root>/_manifest/<cluster>/<topic>/partition=N/<first>-<last>.json  commit records
    <root>/_staging/<batch>/...                                         files not yet committed

Hours are UTC. A row's hour is its event time. A quarantined line has no trusted time of
its own: it goes to the hour of the nearest line that parsed in the same batch (lines of
a partition are in log order), or, when none did, to the time the broker stamped on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow.fs as pafs

ROWS = "requests"
QUARANTINE = "quarantine"
MANIFEST = "_manifest"
STAGING = "_staging"


@dataclass(frozen=True)
class Lake:
    """A lake root opened on its filesystem."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @classmethod
    def open(cls, uri: str) -> Lake:
        """Open a local path or a URI such as `s3://bucket/prefix`, creating the root."""
        if "://" in uri:
            fs, root = pafs.FileSystem.from_uri(uri)
        else:
            fs, root = pafs.LocalFileSystem(), _local_root(uri)
        fs.create_dir(root, recursive=True)
        return cls(fs=fs, root=root.rstrip("/"), uri=uri)

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def glob(self, table: str) -> str:
        """The Parquet glob of `table` for DuckDB, in the form DuckDB expects for the URI."""
        base = self.uri.rstrip("/") if "://" in self.uri else self.root
        return f"{base}/{table}/*/*/*/*/*.parquet"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def list_files(self, folder: str) -> list[str]:
        """Paths of the files directly inside `folder`, sorted; empty when it is missing."""
        selector = pafs.FileSelector(folder, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def list_dirs(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.Directory)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write `data` to `path` so that readers see the old state or the whole new one."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        temporary = f"{path}.tmp"
        with self.fs.open_output_stream(temporary) as out:
            out.write(data)
        self.fs.move(temporary, path)


def hour_dir(hour: datetime) -> str:
    """Hive-style folder of the UTC hour that starts at `hour`."""
    hour = hour.astimezone(timezone.utc)
    return f"year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}"


def hour_key(hour: datetime) -> str:
    """The Dagster partition key of an hour (`YYYY-MM-DD-HH:00`, UTC)."""
    return f"{hour.astimezone(timezone.utc):%Y-%m-%d-%H}:00"


def _local_root(path: str) -> str:
    import os

    return os.path.abspath(os.path.expanduser(path))
