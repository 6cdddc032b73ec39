"""Compaction: the small files of a past hour merged into one per topic partition.

Every commit of the dataflow writes at least one file per table and hour it touches, so
an hour fed by a followed topic or by runs of the ingest sensor collects dozens of small
files per partition. `compact` merges, in each hour folder of each table, the files of
one topic partition (same cluster, topic and partition: the batch name's prefix) into one
`<prefix><first>-<last>-compacted.parquet`, rows in offset order, and the batches it holds
in the file's metadata. The commit records are not touched: they say which records are in
the lake, and the merged file holds the same rows.

Readers must never count a row twice or miss one while files are swapped, on a local
disk or on object storage, where nothing renames several files at once. Each pass keeps a
note in `_compaction/`, rewritten whole at each step, that names every merge: the merged
file and the files it replaces. A merge moves through states:

    staged    written before the merged file: readers leave the merged file out
    swapped   the merged file is complete (the commit point): readers that listed it
              leave out the files it replaces; those that did not, listed the old files
    cleared   the old files are deleted, `grace` seconds after the swap
    (gone)    the merge leaves the note (the note goes with its last one), another
              `grace` seconds later

A reader lists a folder first and reads the notes second (`hidden_by_compaction`), so a
reader that takes less than `grace` seconds from listing to reading its files sees each row
once: the old files stay until `grace` after the swap, and the merge in the note until
`grace` after they are gone. A later pass finishes what an earlier one started; a merge
a crash left staged is undone (its merged file deleted), and the files a merge replaced
are deleted only while the merged file holds all its rows. One compaction runs at a time
per LOGSTACK_HOME and, on a local disk, per lake (locks in their `locks/` and `_locks/`);
two machines compacting one object-storage lake at once are not supported.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from logstack_dagster.errors import LogstackError
from logstack_dagster.lake.layout import (
    COMPACTION,
    QUARANTINE,
    ROWS,
    Lake,
    LakeError,
    parquet_bytes,
    parquet_rows,
)
from logstack_dagster.lake.manifest import committed_batch_names

log = logging.getLogger(__name__)

# Seconds between a swap and deleting the files it replaced, and again before the note
# goes: longer than any reader takes from listing a folder to reading its files.
GRACE_SECONDS = 900.0
# Merged files stop growing here (a merge holds its rows in memory, about 250 MB at
# this size); a bigger group of small files makes several.
MAX_ROWS = 500_000
SUFFIX = "-compacted.parquet"
MERGED_KEY = b"logstack.merged_batches"

# `<topic>-<cluster tag>-p<partition>-<first>-<last>[-<digest>-compacted].parquet`; a
# merged file's range may hold batches of other hours, so its name also has a digest of
# the batches it took in.
_NAME = re.compile(r"^(?P<prefix>.+-[0-9a-f]{8}-p\d{3}-)(?P<first>\d{12})-(?P<last>\d{12})"
                   r"(?P<compacted>-[0-9a-f]{12}-compacted)?\.parquet$")


def file_prefix(name: str) -> str | None:
    """`<topic>-<cluster tag>-p<partition>-` of a batch's or a merged file's name, or None
    for another file (a requeue file)."""
    match = _NAME.match(name.rsplit("/", 1)[-1])
    return None if match is None else match["prefix"]


class CompactionBusy(LogstackError):
    """Another compaction holds the lock."""


@dataclass
class Merge:
    """One merge: the merged file, the files it replaces (paths from the lake root)."""

    file: str
    replaces: list[str]
    rows: int
    state: str = "staged"
    swapped_at: str = ""
    cleared_at: str = ""


@dataclass
class Journal:
    """The note of one pass: its merges, in `_compaction/<name>`. One note per pass, not
    per merge, so that readers on object storage read few notes."""

    name: str
    merges: list[Merge] = field(default_factory=list)

    def save(self, lake: Lake) -> None:
        """Write the note whole; with no merges left, delete it."""
        path = lake.path(COMPACTION, self.name)
        if not self.merges:
            lake.delete_if_present(path)
            return
        data = {"merges": [m.__dict__ for m in self.merges]}
        lake.write_atomic(path, json.dumps(data, sort_keys=True).encode())


@dataclass
class CompactionResult:
    """What one pass did."""

    merged_files: int = 0
    """Files written, each replacing several."""
    replaced_files: int = 0
    rows: int = 0
    deleted_files: int = 0
    """Replaced files deleted, their grace over."""
    undone: int = 0
    """Merges a crash interrupted before their swap, undone."""
    hours: set[str] = field(default_factory=set)


def read_journals(lake: Lake) -> list[Journal]:
    """The notes of every pass whose merges are not all finished, oldest first."""
    journals = []
    for path in lake.list_files(lake.path(COMPACTION)):
        if not path.endswith(".json"):
            continue
        try:
            data = lake.read(path)
        except FileNotFoundError:
            continue  # finished between the listing and the read
        try:
            merges = [Merge(**m) for m in json.loads(data)["merges"]]
            for stamp in [t for m in merges for t in (m.swapped_at, m.cleared_at) if t]:
                _time(stamp)
        except (ValueError, KeyError, TypeError) as exc:
            # Leaving it out could count rows twice; nothing can be read safely.
            raise LakeError(
                f"the compaction note {lake.url(path)} is not one logstack wrote "
                f"({type(exc).__name__}: {exc}); the lake cannot be read safely until it "
                "is restored") from None
        journals.append(Journal(path.rsplit("/", 1)[1], merges))
    return sorted(journals, key=lambda j: j.name)


def read_merges(lake: Lake) -> list[Merge]:
    """Every merge the notes name: under way, swapped or cleared."""
    return [m for journal in read_journals(lake) for m in journal.merges]


def hidden_by_compaction(lake: Lake, listed: set[str]) -> set[str]:
    """Of the files a reader `listed` (full paths), those it must leave out because a
    merge is under way or done: the merged file until its swap, or when the reader did
    not list it; else the files it replaces. Call this after listing, never before."""
    hidden = set()
    for merge in read_merges(lake):
        merged = lake.path(merge.file)
        if merge.state != "staged" and merged in listed:
            hidden.update(lake.path(p) for p in merge.replaces)
        else:
            hidden.add(merged)
    return hidden


def compact(lake: Lake, home: Path, *, before: datetime | None = None,
            grace_seconds: float = GRACE_SECONDS, max_rows: int = MAX_ROWS,
            now: datetime | None = None) -> CompactionResult:
    """Finish earlier merges whose grace is over, then merge the files of every hour that
    ends by `before` (default: the start of the previous hour) that has more than one file
    of a topic partition. Raises CompactionBusy when another compaction under `home`
    (LOGSTACK_HOME) runs. `now` fixes the clock (for tests); else each step takes the
    time it happens at."""
    def clock() -> datetime:
        return now or datetime.now(timezone.utc)

    if before is None:
        before = clock().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    result = CompactionResult()
    with _exclusive(lake, home):
        _advance(lake, clock(), grace_seconds, result)
        # Read before any folder is listed: a batch committed later waits for the next pass.
        committed = committed_batch_names(lake)
        busy = _busy_paths(lake)
        journal = Journal(f"{clock():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json")
        for table in (ROWS, QUARANTINE):
            for folder, hour in _hour_folders(lake, table):
                if before - hour < timedelta(hours=1):  # not over by `before`
                    continue
                for group in _groups(lake, folder, busy, committed):
                    for chunk in _chunks(lake, group, max_rows):
                        if len(chunk) > 1 and _merge(lake, journal, chunk, clock, result):
                            result.hours.add(hour.isoformat())
        # With no grace, the merges of this pass are finished at once.
        if grace_seconds <= 0:
            _advance(lake, clock(), grace_seconds, result)
            _advance(lake, clock(), grace_seconds, result)
    return result


@contextmanager
def _exclusive(lake: Lake, home: Path) -> Iterator[None]:
    """Hold the compaction lock of `home`, and of the lake itself when it is on a local
    disk, so that two homes compacting one lake on this machine meet too."""
    paths = [home / "locks" / "compact.lock"]
    if lake.local:
        paths.append(Path(lake.path("_locks", "compact.lock")))
    with ExitStack() as held:
        for path in paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = held.enter_context(open(path, "a"))
            except OSError as exc:
                raise LogstackError(f"cannot make the compaction lock {path}: "
                                    f"{exc.strerror or exc}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CompactionBusy(
                    f"another compaction of this lake is running (lock {path})") from None
        yield


def _advance(lake: Lake, now: datetime, grace_seconds: float,
             result: CompactionResult) -> None:
    """Undo staged merges, delete replaced files and then forget merges whose grace is
    over; a note with no merge left goes."""
    grace = timedelta(seconds=grace_seconds)
    for path in lake.list_files(lake.path(COMPACTION)):
        if path.endswith(".tmp"):  # a note's write that a killed pass cut short
            lake.delete_if_present(path)
    for journal in read_journals(lake):
        kept, changed = [], False
        for merge in journal.merges:
            changed = changed or merge.state == "staged"
            if merge.state == "staged":
                # Only a crashed pass leaves one (passes hold the lock): the merged file may
                # be partly there; the files it would replace are all still in place.
                lake.delete_if_present(lake.path(merge.file))
                lake.delete_if_present(lake.path(merge.file) + ".tmp")  # a local write cut
                result.undone += 1
                continue
            if merge.state == "swapped" and now - _time(merge.swapped_at) >= grace:
                if parquet_rows(lake, lake.path(merge.file)) != merge.rows:
                    # Never delete what a merged file does not hold whole (another pass on
                    # the lake undid it, say): forget the merge, keep the files.
                    log.warning("compaction keeps the files %s replaced: it does not hold "
                                "its %d rows", merge.file, merge.rows)
                    changed = True
                    continue
                for path in merge.replaces:
                    lake.delete_if_present(lake.path(path))
                    result.deleted_files += 1
                merge.state, merge.cleared_at = "cleared", _stamp(now)
                changed = True
            elif merge.state == "cleared" and now - _time(merge.cleared_at) >= grace:
                changed = True
                continue
            kept.append(merge)
        if changed:
            journal.merges = kept
            journal.save(lake)


def _busy_paths(lake: Lake) -> set[str]:
    """Files no merge may take: those a note names whose merge is not cleared (their
    readers' rules would cross)."""
    busy = set()
    for merge in read_merges(lake):
        if merge.state != "cleared":
            busy.add(lake.path(merge.file))
            busy.update(lake.path(p) for p in merge.replaces)
    return busy


def _hour_folders(lake: Lake, table: str) -> Iterator[tuple[str, datetime]]:
    for year in lake.list_dirs(lake.path(table)):
        for month in lake.list_dirs(year):
            for day in lake.list_dirs(month):
                for hour in lake.list_dirs(day):
                    try:
                        parts = dict(p.split("=", 1) for p in
                                     hour[len(lake.path(table)) + 1:].split("/"))
                        yield hour, datetime(int(parts["year"]), int(parts["month"]),
                                             int(parts["day"]), int(parts["hour"]),
                                             tzinfo=timezone.utc)
                    except (KeyError, ValueError):
                        log.warning("compaction skips %s: not an hour folder", hour)


def _groups(lake: Lake, folder: str, busy: set[str],
            committed: set[str]) -> list[list[tuple[str, int, int]]]:
    """The folder's files by topic partition: (path, first offset, last offset), in
    offset order; requeue files and files of batches not committed are left alone."""
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for path in lake.list_files(folder):
        name = path.rsplit("/", 1)[1]
        match = _NAME.match(name)
        if match is None or path in busy:
            continue
        if not match["compacted"] and name.removesuffix(".parquet") not in committed:
            continue
        groups.setdefault(match["prefix"], []).append(
            (path, int(match["first"]), int(match["last"])))
    return [sorted(files, key=lambda f: f[1]) for _, files in sorted(groups.items())]


def _chunks(lake: Lake, group: list[tuple[str, int, int]],
            max_rows: int) -> Iterator[list[tuple[str, int, int]]]:
    """Runs of files, in offset order, of at most `max_rows` rows together; a file that
    alone reaches half of it is left as it is."""
    chunk: list[tuple[str, int, int]] = []
    rows = 0
    for item in group:
        count = parquet_rows(lake, item[0]) or 0  # the data is read only when merged
        if count >= max_rows // 2:
            yield chunk
            chunk, rows = [], 0
            continue
        if chunk and rows + count > max_rows:
            yield chunk
            chunk, rows = [], 0
        chunk.append(item)
        rows += count
    yield chunk


def _merge(lake: Lake, journal: Journal, files: list[tuple[str, int, int]],
           clock: Callable[[], datetime], result: CompactionResult) -> bool:
    """Merge `files` into one, noted in `journal`; False when they were left as they are."""
    tables, batches = [], []
    for path, first, last in files:
        with lake.fs.open_input_file(path) as handle:
            table = pq.read_table(handle)
        tables.append(table)
        batches.extend(merged_batches(table.schema) or [[first, last]])
    try:
        merged = pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:  # a column whose type changed between versions
        log.warning("compaction skips %d files of %s: %s", len(files),
                    files[0][0].rsplit("/", 1)[0], exc)
        return False
    merged = merged.replace_schema_metadata(
        {**(merged.schema.metadata or {}), MERGED_KEY: json.dumps(batches).encode()})
    folder = files[0][0].rsplit("/", 1)[0]
    prefix = file_prefix(files[0][0])
    digest = hashlib.sha256(json.dumps(sorted(batches)).encode()).hexdigest()[:12]
    target = (f"{folder}/{prefix}{files[0][1]:012d}-{max(f[2] for f in files):012d}-"
              f"{digest}{SUFFIX}")
    root = lake.path("")
    merge = Merge(file=target[len(root):], replaces=[f[0][len(root):] for f in files],
                  rows=merged.num_rows)
    if lake.exists(target):
        log.warning("compaction skips %s: it exists already", target)
        return False
    journal.merges.append(merge)
    journal.save(lake)
    lake.write_atomic(target, parquet_bytes(merged))
    merge.state, merge.swapped_at = "swapped", _stamp(clock())
    journal.save(lake)  # the commit point
    result.merged_files += 1
    result.replaced_files += len(files)
    result.rows += merged.num_rows
    return True


def merged_batches(schema: pa.Schema) -> list[list[int]] | None:
    """The [first, last] offset ranges of the batches a merged file holds, from its
    metadata; None for a file the sink wrote."""
    raw = (schema.metadata or {}).get(MERGED_KEY)
    return None if raw is None else json.loads(raw)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)
