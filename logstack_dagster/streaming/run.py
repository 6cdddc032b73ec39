"""Run the ingest dataflow as a process of its own: `python -m logstack_dagster.streaming.run`.

It reads the topic until it has caught up (or forever with `--follow`), starting each
partition where the lake's commits of it end, and prints a JSON summary of what it
committed. Under Dagster Pipes it streams its log and reports the summary back.

With `--processes N` above 1 this process only launches and watches N members of one
Bytewax cluster (see `cluster.py`), each running `--workers` workers; it holds the ingest
lock for them and reports the one summary of the run.
"""

from __future__ import annotations

import argparse
import fcntl
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from logstack_dagster.errors import LogstackError
from logstack_dagster.flags import positive_seconds, seconds
from logstack_dagster.ingest.topic import Cluster, resolve_cluster, topic_metadata, wait_reachable
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.settings import Settings, SettingsError, load_settings

E = TypeVar("E", bound=BaseException)

if TYPE_CHECKING:
    from logstack_dagster.streaming.batch import ProcessedBatch, RawBatch
    from logstack_dagster.streaming.dataflow import BatchProcessor

log = logging.getLogger("logstack_dagster.streaming.run")

# Recovery partitions are fixed when the store is made; enough for the most workers a
# deployment will run, since a store cannot be re-partitioned later.
RECOVERY_PARTITIONS = 8
EXIT_BROKER_LOST = 3
# A member whose link to another member of the cluster broke (a panic in Bytewax's
# communication threads) while its own workers raised nothing. The launcher starts the
# cluster again for this one; the summary says how many attempts the run took.
EXIT_CLUSTER_LINK = 4
# A batch that failed to process: the next run meets it again, so no retry helps.
EXIT_BATCH_FAILED = 5
CLUSTER_ATTEMPTS = 3
FAILED = "the dataflow failed: "  # how its error begins in a Dagster run's log

WORKER_ERRORS: list[Exception] = []
"""Errors raised by the processing of this process's workers. In a cluster Bytewax 0.21
reports a worker's exception only as a panic of the send thread it poisoned ("Send
thread panic: Any { .. }"); the member reports the first of these instead.

Known shortcoming: errors of the source and sink are not kept here, so in a cluster a
lake that cannot be written shows as a lost link, is tried three times, and its cause is
not reported. Record them too before relying on several processes with a small disk."""


class IngestBusy(LogstackError):
    """Another dataflow is already ingesting this topic into this lake."""


@dataclass(frozen=True)
class FlowOptions:
    """How to run the dataflow; each field has a flag of `logstack flow`."""

    workers: int = 1
    follow: bool = False
    epoch_seconds: float = 5.0
    run_id: str = ""
    log_format: str | None = None
    broker_timeout: float = 60.0
    processes: int = 1
    progress_seconds: float = 10.0
    enrich: bool = True
    until: Path | None = None  # with follow: stop at the end offsets this file will give
    # The longest a partition's records wait in the sink's buffer; None: the sink's default.
    commit_seconds: float | None = None

    @property
    def total_workers(self) -> int:
        return self.workers * self.processes


@dataclass(frozen=True)
class Member:
    """This process's place in a cluster of several, as the launcher passed it."""

    index: int
    addresses: list[str]
    cluster_id: str
    partitions: int
    parent_pid: int


# Bytewax runs a thread and a recovery-store file per worker; past this many on one
# machine a run spends its time starting and scheduling them (500 never finished).
MAX_WORKERS = 64


def check_layout(processes: int, workers: int) -> None:
    """Refuse more workers in all than one machine runs, naming the flags."""
    if processes * workers > MAX_WORKERS:
        raise LogstackError(
            f"--processes x --workers is {processes} x {workers} = {processes * workers} "
            f"workers; at most {MAX_WORKERS} run on one machine")


class TopicRemade(LogstackError):
    """The topic ends before where this lake has read it: it is not the topic it read."""


def refuse_remade_topic(cluster: Cluster, topic: str, partitions: int,
                        manifest: Manifest) -> None:
    """Refuse to read a topic whose partitions end before the lake's commits of them.

    The lake knows records by topic, partition and offset; a topic made again under the
    same name starts its offsets at 0, so its records would be taken for ones already in
    the lake, and its partitions read from an offset they may never reach (the embedded
    broker answers a fetch there with nothing, so the run would wait for ever).

    Known shortcoming: a remade topic that has already grown past the old one's end is not
    noticed. Kafka's topic ids would tell; the manifest does not record them.
    """
    from logstack_dagster.ingest.topic import ends_before

    read = manifest.next_offsets()
    if not read:
        return
    short = ends_before(cluster, topic, partitions, read)
    if short:
        partition, end = min(short.items())
        state = "no longer exists" if partition >= partitions else f"ends at offset {end}"
        raise TopicRemade(
            f"partition {partition} of topic {topic!r} on {cluster.brokers} {state}, but this "
            f"lake already holds its records before offset {read[partition]}: "
            f"the topic was deleted and made again, or its broker lost them ({len(short)} of "
            f"{len(read)} partitions are short). Its records cannot be told from those in the "
            "lake; produce them to a topic of a new name, or ingest into a new lake "
            "(LOGSTACK_HOME or LOGSTACK_LAKE)")


class BatchFailed(LogstackError):
    """Processing a batch raised; the error is the worker's own, not Bytewax's wrapper."""


def check_settings(settings: Settings, log_format: str | None, enrich: bool = True) -> None:
    """Refuse, naming the setting, a format or GeoIP database the dataflow could not use:
    before a run takes the lock, and before `logstack load` produces a line."""
    from logstack_dagster.parser.presets import resolve_format

    chosen = log_format or settings.log_format
    if chosen and chosen != "auto":
        try:
            resolve_format(chosen)
        except ValueError as exc:
            raise SettingsError(f"{'--format' if log_format else 'LOGSTACK_FORMAT'}: "
                                f"{exc}") from None
    if enrich:
        from logstack_dagster.enrichment.geoip import GeoEnricher

        checks = [("GEOIP_CITY_DB", None)]
        if settings.geoip_asn_db:
            checks.append(("GEOIP_ASN_DB", settings.geoip_asn_db))
        for name, asn_db in checks:
            try:
                GeoEnricher(settings.geoip_city_db, asn_db, cache_size=1).close()
            except (OSError, ValueError) as exc:
                raise SettingsError(f"{name}: {exc}") from None


def run_flow(settings: Settings, options: FlowOptions) -> dict[str, object]:
    """Run the dataflow to completion and return the summary of what it committed."""
    check_layout(options.processes, options.workers)
    check_settings(settings, options.log_format, options.enrich)
    cluster = resolve_cluster(settings)
    # A broker that is down at the start gets the same grace as one lost mid-run.
    try:
        wait_reachable(cluster, timeout=min(2.0, options.broker_timeout))
    except LogstackError:
        if options.broker_timeout <= 2.0:
            raise
        log.warning("no broker answers at %s; waiting up to %.0f s (--broker-timeout)",
                    cluster.brokers, options.broker_timeout)
        try:
            wait_reachable(cluster, timeout=options.broker_timeout - 2.0)
        except LogstackError:
            raise LogstackError(f"no Kafka broker answered at {cluster.brokers} within "
                                f"{options.broker_timeout:g} s") from None
    cluster_id, partitions = topic_metadata(cluster, settings.topic)
    if partitions == 0:
        raise LogstackError(f"topic {settings.topic!r} does not exist on {cluster.brokers}")

    check_writable(settings.lake)
    manifest = Manifest(Lake.open(settings.lake), cluster_id, settings.topic)
    refuse_remade_topic(cluster, settings.topic, partitions, manifest)
    run_id = options.run_id or uuid.uuid4().hex
    recovery = settings.recovery_dir / cluster_id / settings.topic
    lock_paths = ingest_lock_paths(settings, cluster_id, manifest.lake)
    with _exclusive(lock_paths, recovery, options.total_workers) as locks:
        log.info("reading %s from %s (%d partitions, %d processes of %d workers, run %s)",
                 settings.topic, cluster.brokers, partitions, options.processes,
                 options.workers, run_id)
        # Every partition, before any starts where its commits end: done by each sink
        # partition when it was made, this missed a caught-up partition, which gets no
        # records, so a batch committed but not moved into place stayed out of sight.
        for partition in range(partitions):
            undone = manifest.recover(partition)
            if undone:
                log.info("partition %d: removed %d uncommitted batches", partition, undone)
        _log_progress(cluster, manifest, options.progress_seconds)
        if options.processes == 1:
            _execute(settings, options, cluster, cluster_id, partitions, run_id, None)
        else:
            from logstack_dagster.streaming.cluster import (
                MemberFailed,
                free_addresses,
                member_env,
                run_members,
            )

            for attempt in range(1, CLUSTER_ATTEMPTS + 1):
                addresses = free_addresses(options.processes)
                commands = [_member_command(options, run_id, i, addresses, cluster_id,
                                            partitions) for i in range(options.processes)]
                try:
                    run_members(commands, {**member_env(), **_settings_env(settings, cluster)},
                                keep_fds=[lock.fileno() for lock in locks])
                    break
                except MemberFailed as exc:
                    if exc.code != EXIT_CLUSTER_LINK or attempt == CLUSTER_ATTEMPTS:
                        raise
                    # A safety net for a link lost for reasons outside the dataflow (a
                    # reset connection); errors of the dataflow itself end the run. Starting
                    # again is safe: the manifest skips what is committed.
                    log.warning("%s; starting the cluster again (attempt %d of %d)", exc,
                                attempt + 1, CLUSTER_ATTEMPTS)
            if attempt > 1:
                log.warning("the cluster finished on attempt %d of %d", attempt,
                            CLUSTER_ATTEMPTS)

    summary = summarize(Manifest(Lake.open(settings.lake), cluster_id, settings.topic), run_id)
    return {**summary, "attempts": attempt if options.processes > 1 else 1}


def run_member(settings: Settings, options: FlowOptions, member: Member) -> None:
    """Run one member of a cluster that `run_flow` launched; it holds the lock for us."""
    from logstack_dagster.streaming.cluster import die_with_parent

    die_with_parent(member.parent_pid)
    cluster = resolve_cluster(settings)
    _execute(settings, options, cluster, member.cluster_id, member.partitions,
             options.run_id, member)


def _execute(settings: Settings, options: FlowOptions, cluster: Cluster, cluster_id: str,
             partitions: int, run_id: str, member: Member | None) -> None:
    """Run the dataflow in this process: alone, or as `member` of a cluster."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    recovery = settings.recovery_dir / cluster_id / settings.topic
    flow = _real_flow(settings, cluster, cluster_id, partitions, run_id, options)
    # The hot path makes few reference cycles but many short-lived containers; collecting
    # the young generation less often, and never scanning start-up objects again, saves
    # a few percent of the run.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    _watch_broker(cluster, options.broker_timeout,
                  parent_pid=member.parent_pid if member else None)
    where = {} if member is None else {"process_id": member.index,
                                       "addresses": member.addresses}
    if member is not None:
        from logstack_dagster.streaming.cluster import wait_for_earlier

        wait_for_earlier(member.addresses, member.index)
    try:
        cli_main(flow, workers_per_process=options.workers,
                 epoch_interval=timedelta(seconds=options.epoch_seconds),
                 recovery_config=RecoveryConfig(str(recovery / "db")), **where)
    except Exception as exc:
        if _cause(exc, KeyboardInterrupt) is not None:
            # Bytewax wraps a Ctrl-C that arrives inside a step in an error about the step.
            raise KeyboardInterrupt("what was committed stays; `logstack flow` resumes "
                                    "from there") from None
        cause = _cause(exc, OSError)
        if cause is None and WORKER_ERRORS and member is None:
            # Bytewax wraps it in an error about the step; say what went wrong first.
            first = WORKER_ERRORS[0]
            log.error("a worker failed", exc_info=first)
            raise BatchFailed(
                f"processing a batch failed: {type(first).__name__}: {first}; what was "
                "committed stays, and the next run meets this batch again") from exc
        if cause is None:
            raise
        raise LogstackError(
            f"writing to the lake at {settings.lake} failed: {cause}; what was committed "
            "stays, the next run resumes from there") from exc
    from logstack_dagster.streaming.sink import FAILED_CLOSES

    if FAILED_CLOSES:
        raise LogstackError(
            f"writing to the lake at {settings.lake} failed: {FAILED_CLOSES[0]}; what was "
            "committed stays, the next run resumes from there")


def _settings_env(settings: Settings, cluster: Cluster) -> dict[str, str]:
    """What a member must read as the launcher did, whether it came from the environment
    or from flags (`logstack flow --topic T --brokers B`)."""
    env = {"KAFKA_BROKERS": cluster.brokers, "KAFKA_TOPIC": settings.topic,
           "LOGSTACK_HOME": str(settings.home)}
    if settings.lake_uri:
        env["LOGSTACK_LAKE"] = settings.lake_uri
    return env


def _member_command(options: FlowOptions, run_id: str, index: int, addresses: list[str],
                    cluster_id: str, partitions: int) -> list[str]:
    command = [sys.executable, "-m", "logstack_dagster.streaming.run",
               "--workers", str(options.workers), "--epoch-seconds", str(options.epoch_seconds),
               "--run-id", run_id, "--broker-timeout", str(options.broker_timeout),
               "--member", str(index), "--addresses", ";".join(addresses),
               "--cluster-id", cluster_id, "--topic-partitions", str(partitions),
               "--parent-pid", str(os.getpid())]
    if options.follow:
        command.append("--follow")
    if options.commit_seconds is not None:
        command += ["--commit-seconds", str(options.commit_seconds)]
    if options.until is not None:
        command += ["--until", str(options.until)]
    if not options.enrich:
        command.append("--no-enrich")
    if any(name.startswith("DAGSTER_PIPES_") for name in os.environ):
        # Under Dagster only the launcher speaks to the run's log; members' stderr would
        # reach the console of whoever started Dagster, so they keep to warnings there.
        command.append("--quiet")
    if options.log_format:
        command += ["--format", options.log_format]
    return command


def summarize(manifest: Manifest, run_id: str) -> dict[str, object]:
    """Counts of what run `run_id` committed, per hour of the lake as well."""
    hours: dict[str, dict[str, int]] = {}
    totals = {"records": 0, "rows": 0, "quarantined": 0, "files": 0, "bytes": 0}
    ranges: dict[int, list[int]] = {}
    for commit in manifest.commits():
        if commit.run_id != run_id:
            continue
        totals["records"] += commit.records
        totals["rows"] += commit.rows
        totals["quarantined"] += commit.quarantined
        span = ranges.setdefault(commit.partition, [commit.first_offset, commit.last_offset])
        span[0], span[1] = min(span[0], commit.first_offset), max(span[1], commit.last_offset)
        for entry in commit.files:
            hour = hours.setdefault(entry.hour, {"rows": 0, "quarantined": 0,
                                                 "files": 0, "bytes": 0})
            hour["rows" if entry.table == "requests" else "quarantined"] += entry.rows
            hour["files"] += 1
            hour["bytes"] += entry.bytes
            totals["files"] += 1
            totals["bytes"] += entry.bytes
    return {"run_id": run_id, "cluster": manifest.cluster, "topic": manifest.topic,
            **totals, "offsets": {str(p): r for p, r in sorted(ranges.items())},
            "hours": dict(sorted(hours.items()))}


def _real_flow(settings: Settings, cluster: Cluster, cluster_id: str, partitions: int,
               run_id: str, options: FlowOptions):
    from logstack_dagster.enrichment.pipeline import RowEnricher
    from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
    from logstack_dagster.streaming.sink import LakeSink
    from logstack_dagster.streaming.source import TopicSource

    manifest = Manifest(Lake.open(settings.lake), cluster_id, settings.topic)
    source = TopicSource(
        brokers=cluster.brokers.split(","), topic=settings.topic, tail=options.follow,
        until=options.until, starts=manifest.next_offsets(),
        # librdkafka logs every failed reconnect; the broker watchdog reports a lost broker
        # once, with its address, instead.
        add_config={**{k: str(v) for k, v in cluster.security.items()}, "log_level": "2"},
    )
    sink = LakeSink(settings.lake, cluster_id, settings.topic, partitions, run_id,
                    commit_seconds=options.commit_seconds)
    fixed = options.log_format or settings.log_format
    fixed = None if fixed == "auto" else fixed
    # A partition that resumes keeps the format it was read with, whatever batch it
    # resumes at: the rows must not depend on where a crash happened.
    known = {} if fixed else manifest.last_formats()

    # One enricher for all the workers of this process: its caches learn each address and
    # agent once, where an enricher per worker would look every one up once per worker.
    enricher = (RowEnricher(settings.geoip_city_db, settings.geoip_asn_db,
                            settings.site_hosts) if options.enrich else None)

    def processor() -> BatchProcessor:
        return BatchProcessor(fixed, enricher, known)

    return build_flow(source, sink, PerWorker(processor))


class PerWorker:
    """A BatchProcessor of each worker's own, made by `make` on the worker's first batch.

    Bytewax hands every worker thread of a process the same flow object, so a processor
    built once would be shared by all of them. A processor keeps the format it detected
    for each partition its worker reads; the enrichment behind it is shared, and its
    caches are made for that (`DistinctCache`: with caches that were not, two workers
    found known addresses out of line with their answers, an index out of bounds in about
    half the runs of 2 processes x 2 workers on a generated 1M-line log).

    The first processor is made at once, so that a bad format or GeoIP database is
    reported before the dataflow starts; the first worker takes it.
    """

    def __init__(self, make: Callable[[], BatchProcessor]):
        self.make = make
        # Keyed by thread id, not kept in a threading.local: Bytewax's worker threads are
        # not Python threads, and what a threading.local holds for them is gone after
        # every call (a new processor, with cold caches, for each batch).
        self.processors: dict[int, BatchProcessor] = {}
        self.spare: list[BatchProcessor] = [make()]
        self.lock = threading.Lock()

    def __call__(self, raw: RawBatch) -> ProcessedBatch:
        processor = self.processors.get(threading.get_ident())
        if processor is None:
            with self.lock:
                processor = self.spare.pop() if self.spare else self.make()
                self.processors[threading.get_ident()] = processor
        try:
            return processor(raw)
        except Exception as exc:
            WORKER_ERRORS.append(exc)
            raise


def check_writable(lake_uri: str) -> None:
    """Fail early, naming the path, when the lake cannot be written."""
    try:
        lake = Lake.open(lake_uri)
        lake.write_atomic(lake.path("_staging", f".probe-{os.getpid()}"), b"")
        lake.fs.delete_file(lake.path("_staging", f".probe-{os.getpid()}"))
    except OSError as exc:
        raise LogstackError(f"the lake at {lake_uri} is not writable: {exc}") from None


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    """The exception of `kind` behind a dataflow failure, if any: an operating-system error
    (disk full, no permission) or a Ctrl-C."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _log_progress(cluster: Cluster, manifest: Manifest, interval: float) -> None:
    """Log, every `interval` seconds, the records committed since the last report, their
    rate, and the lag: records in the topic not yet in the lake.

    Counts come from the manifest, so they are whole committed batches; the lag is read
    from broker metadata and is approximate on the embedded broker (see `end_offsets`).
    """
    from logstack_dagster.ingest.topic import end_offsets

    def watch() -> None:
        before, since = sum(manifest.next_offsets().values()), time.monotonic()
        while True:
            time.sleep(interval)
            try:
                done = manifest.next_offsets()
                ends = end_offsets(cluster, manifest.topic)
            except (LogstackError, OSError) as exc:
                log.warning("progress unknown: %s", exc)
                continue
            now, total = time.monotonic(), sum(done.values())
            lag = sum(max(0, end - done.get(p, 0)) for p, end in ends.items())
            log.info("committed %d records in %.0f s (%.0f records/s); lag %d records",
                     total - before, now - since, (total - before) / (now - since), lag)
            before, since = total, now

    if interval > 0:
        threading.Thread(target=watch, name="progress-log", daemon=True).start()


def _watch_broker(cluster: Cluster, timeout: float, parent_pid: int | None = None) -> None:
    """End this process when no broker has accepted a connection for `timeout` seconds,
    or, for a member of a cluster, when its launcher `parent_pid` is gone.

    The Kafka client retries a lost broker forever, so a run would otherwise hang. Ending
    abruptly loses nothing: only whole committed batches count as in the lake, and the
    next run resumes from them.
    """
    from logstack_dagster.streaming.cluster import orphaned

    def watch() -> None:
        lost_since = None
        while True:
            time.sleep(1.0)
            if orphaned(parent_pid):
                os._exit(1)
            try:
                wait_reachable(cluster, timeout=1.0)
                lost_since = None
                continue
            except LogstackError:
                lost_since = lost_since or time.monotonic()
            down = time.monotonic() - lost_since
            if down >= timeout:
                message = (f"lost the Kafka broker at {cluster.brokers} for {down:.0f} s; "
                           "what was committed stays, the next run resumes from there")
                log.error("%s", message)
                print(f"logstack flow: error: {message}", file=sys.stderr, flush=True)
                logging.shutdown()
                os._exit(EXIT_BROKER_LOST)
            log.warning("the broker at %s does not answer (for %.0f s of %.0f s)",
                        cluster.brokers, down, timeout)

    threading.Thread(target=watch, name="broker-watchdog", daemon=True).start()


def ingest_lock_paths(settings: Settings, cluster_id: str, lake: Lake) -> list[Path]:
    """The lock files a dataflow of the topic holds: its home's and, since two homes on
    this machine can share a local lake, the lake's."""
    name = f"{settings.topic}.ingest.lock"
    paths = [settings.home / "locks" / cluster_id / name]
    if lake.local:
        paths.append(Path(lake.path("_locks", cluster_id, name)))
    return paths


def check_not_ingesting(paths: list[Path]) -> None:
    """Raise IngestBusy when a dataflow holds one of the ingest locks `paths` now."""
    for path in paths:
        if not path.exists():
            continue
        with open(path, "a") as lock:
            _take(lock, path)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _take(lock: IO[str], path: Path) -> None:
    """Take the ingest lock `lock` (the file at `path`), or raise IngestBusy naming it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise IngestBusy(f"another dataflow is ingesting this topic (lock {path})") from None


@contextmanager
def _exclusive(lock_paths: list[Path], recovery: Path, workers: int) -> Iterator[list[IO[str]]]:
    """Hold the ingest locks of a topic (the home's, and a local lake's) and yield the lock
    files; make its recovery store on first use, with a partition for each of at least
    `workers` workers in all.

    The lock is not in the recovery folder: deleting that folder under a running dataflow
    let a second one in beside it, and both wrote the same records.
    """
    from bytewax.recovery import init_db_dir

    recovery.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        locks = []
        for lock_path in lock_paths:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = held.enter_context(open(lock_path, "w"))
            _take(lock, lock_path)
            locks.append(lock)
        store = recovery / "db"
        if not store.exists():
            store.mkdir()
            init_db_dir(store, max(RECOVERY_PARTITIONS, workers))
        made = len(list(store.glob("part-*.sqlite3")))
        if made < workers:
            raise LogstackError(
                f"the recovery store at {store} was made for {made} workers, fewer than the "
                f"{workers} asked for (processes x workers); run with at most {made}")
        yield locks


def main(argv: list[str] | None = None) -> int:
    from logstack_dagster.streaming.cluster import MemberFailed

    try:
        settings = load_settings()
    except LogstackError as exc:
        print(f"logstack flow: error: {exc}", file=sys.stderr)
        return 1
    args = _arguments(settings).parse_args(argv)
    options = FlowOptions(args.workers, args.follow, args.epoch_seconds, args.run_id,
                          args.log_format, args.broker_timeout, args.processes,
                          args.progress_seconds, not args.no_enrich, args.until,
                          args.commit_seconds)
    if args.member is not None:
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
            format=f"%(asctime)s [{args.member}] %(name)s %(levelname)s %(message)s")
        member = Member(args.member, args.addresses.split(";"), args.cluster_id,
                        args.topic_partitions, args.parent_pid)
        try:
            run_member(settings, options, member)
        except LogstackError as exc:
            print(f"logstack flow: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            # The launcher forwarded Ctrl-C and reports it once, for every member.
            return 130
        except BaseException as exc:
            # pyo3 raises Rust panics as PanicException, a BaseException of its own module.
            if type(exc).__name__ != "PanicException":
                raise
            if WORKER_ERRORS:
                # The panic only hides a worker's own error, which a new attempt would meet
                # again: report that error and fail the run.
                cause = WORKER_ERRORS[0]
                log.error("a worker of process %d failed", member.index, exc_info=cause)
                print(f"logstack flow: error: process {member.index}: processing a batch "
                      f"failed: {type(cause).__name__}: {cause}", file=sys.stderr)
                return 1
            print(f"logstack flow: error: process {member.index} lost its link to the "
                  f"cluster: {str(exc).splitlines()[0] if str(exc) else 'panic'}",
                  file=sys.stderr)
            return EXIT_CLUSTER_LINK
        return 0

    if args.parent_pid is not None:
        # Started by `logstack load` or a Dagster run: the dataflow must not outlive it.
        from logstack_dagster.streaming.cluster import die_with_parent

        die_with_parent(args.parent_pid, signal.SIGTERM)
    try:
        with _pipes() as pipes:
            # Under Dagster the log goes to the run's event log; alone, to stderr.
            if pipes is None:
                logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
            try:
                summary = run_flow(settings, options)
            except LogstackError as exc:
                if pipes is not None:
                    # Into the run's own log, where the failure alert finds the cause.
                    log.error("%s%s", FAILED, exc)
                raise
            if pipes is not None:
                pipes.report_custom_message(summary)
                return 0
    except MemberFailed as exc:
        print(f"logstack flow: error: {exc}", file=sys.stderr)
        return exc.code
    except BatchFailed as exc:
        print(f"logstack flow: error: {exc}", file=sys.stderr)
        return EXIT_BATCH_FAILED
    except LogstackError as exc:
        print(f"logstack flow: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def _arguments(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m logstack_dagster.streaming.run")
    parser.add_argument("--workers", "-w", type=_at_least_one, default=settings.flow_workers,
                        help="workers per process (default LOGSTACK_FLOW_WORKERS or 1)")
    parser.add_argument("--processes", "-p", type=_at_least_one,
                        default=settings.flow_processes,
                        help="processes of the dataflow (default LOGSTACK_FLOW_PROCESSES or 1)")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--epoch-seconds", type=positive_seconds, default=5.0)
    parser.add_argument("--commit-seconds", type=seconds,
                        help="the longest records wait in a partition's buffer before they "
                             "are written, at the next snapshot after (default 60)")
    parser.add_argument("--run-id", default="")
    parser.add_argument("--format", dest="log_format")
    parser.add_argument("--broker-timeout", type=seconds, default=60.0,
                        help="seconds without a broker before the run gives up")
    parser.add_argument("--progress-seconds", type=seconds, default=10.0,
                        help="how often to log throughput and lag (0: never)")
    parser.add_argument("--no-enrich", action="store_true",
                        help="parsed columns only, for measuring what enrichment costs")
    parser.add_argument("--until", type=Path,
                        help="with --follow: stop at the end offsets this JSON file gives "
                             "once it exists (`logstack load` writes it)")
    # Set by the launcher for each member of a cluster of processes, not by people.
    for flag, kind in (("--member", int), ("--addresses", str), ("--cluster-id", str),
                       ("--topic-partitions", int), ("--parent-pid", int)):
        parser.add_argument(flag, type=kind, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    return parser


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return int(text)


@contextmanager
def _pipes():
    """A Dagster Pipes context when Dagster launched this process, else None."""
    import os

    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    if DAGSTER_PIPES_CONTEXT_ENV_VAR not in os.environ:
        yield None
        return
    with open_dagster_pipes() as context:
        package_log = logging.getLogger("logstack_dagster")
        package_log.setLevel(logging.INFO)
        package_log.addHandler(_PipesHandler(context))
        yield context


class _PipesHandler(logging.Handler):
    """Forwards the dataflow's log records to the Dagster run's log."""

    def __init__(self, context):
        super().__init__(logging.INFO)
        self.context = context

    def emit(self, record: logging.LogRecord) -> None:
        self.context.log.log(record.levelno, self.format(record))


if __name__ == "__main__":
    sys.exit(main())
