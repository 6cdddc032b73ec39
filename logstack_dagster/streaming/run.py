"""Run the ingest dataflow as a process of its own: `python -m logstack_dagster.streaming.run`.

It reads the topic until it has caught up (or forever with `--follow`), resumes from
the Bytewax recovery store of the broker cluster and topic, and prints a JSON summary of
what it committed. Under Dagster Pipes it streams its log and reports the summary back.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from logstack_dagster.errors import LogstackError
from logstack_dagster.ingest.topic import Cluster, resolve_cluster, topic_metadata, wait_reachable
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.settings import Settings, load_settings

log = logging.getLogger("logstack_dagster.streaming.run")

# Recovery partitions are fixed when the store is made; enough for the most workers a
# deployment will run, since a store cannot be re-partitioned later.
RECOVERY_PARTITIONS = 8
EXIT_BROKER_LOST = 3


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


def run_flow(settings: Settings, options: FlowOptions) -> dict[str, object]:
    """Run the dataflow to completion and return the summary of what it committed."""
    from bytewax._bytewax import cli_main
    from bytewax.recovery import RecoveryConfig

    cluster = resolve_cluster(settings)
    wait_reachable(cluster)
    cluster_id, partitions = topic_metadata(cluster, settings.topic)
    if partitions == 0:
        raise LogstackError(f"topic {settings.topic!r} does not exist on {cluster.brokers}")

    check_writable(settings.lake)
    run_id = options.run_id or uuid.uuid4().hex
    recovery = settings.recovery_dir / cluster_id / settings.topic
    with _exclusive(recovery):
        flow = _real_flow(settings, cluster, cluster_id, partitions, run_id, options)
        log.info("reading %s from %s (%d partitions, %d workers, run %s)",
                 settings.topic, cluster.brokers, partitions, options.workers, run_id)
        _watch_broker(cluster, options.broker_timeout)
        try:
            cli_main(flow, workers_per_process=options.workers,
                     epoch_interval=timedelta(seconds=options.epoch_seconds),
                     recovery_config=RecoveryConfig(str(recovery / "db")))
        except Exception as exc:
            cause = _os_error(exc)
            if cause is None:
                raise
            raise LogstackError(
                f"writing to the lake at {settings.lake} failed: {cause}; what was committed "
                "stays, the next run resumes from there") from exc

    return summarize(Manifest(Lake.open(settings.lake), cluster_id, settings.topic), run_id)


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
    from bytewax.connectors.kafka import KafkaSource

    from logstack_dagster.enrichment.pipeline import RowEnricher
    from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
    from logstack_dagster.streaming.sink import LakeSink

    source = KafkaSource(
        brokers=cluster.brokers.split(","), topics=[settings.topic], tail=options.follow,
        # librdkafka logs every failed reconnect; the broker watchdog reports a lost broker
        # once, with its address, instead.
        add_config={**{k: str(v) for k, v in cluster.security.items()}, "log_level": "2"},
        batch_size=10_000,
    )
    sink = LakeSink(settings.lake, cluster_id, settings.topic, partitions, run_id)
    enricher = RowEnricher(settings.geoip_city_db, settings.geoip_asn_db, settings.site_hosts)
    processor = BatchProcessor(options.log_format or settings.log_format, enricher)
    return build_flow(source, sink, processor)


def check_writable(lake_uri: str) -> None:
    """Fail early, naming the path, when the lake cannot be written."""
    try:
        lake = Lake.open(lake_uri)
        lake.write_atomic(lake.path("_staging", f".probe-{os.getpid()}"), b"")
        lake.fs.delete_file(lake.path("_staging", f".probe-{os.getpid()}"))
    except OSError as exc:
        raise LogstackError(f"the lake at {lake_uri} is not writable: {exc}") from None


def _os_error(exc: BaseException) -> OSError | None:
    """The operating-system error behind a dataflow failure (disk full, no permission)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _watch_broker(cluster: Cluster, timeout: float) -> None:
    """End this process when no broker has accepted a connection for `timeout` seconds.

    The Kafka client retries a lost broker forever, so a run would otherwise hang. Ending
    abruptly loses nothing: only whole committed batches count as in the lake, and the
    next run resumes from them.
    """
    def watch() -> None:
        lost_since = None
        while True:
            time.sleep(1.0)
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


@contextmanager
def _exclusive(recovery: Path) -> Iterator[None]:
    """Hold the ingest lock of a topic; make its recovery store on first use."""
    from bytewax.recovery import init_db_dir

    recovery.mkdir(parents=True, exist_ok=True)
    with open(recovery / "ingest.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestBusy(f"another dataflow is ingesting into {recovery}") from None
        if not (recovery / "db").exists():
            (recovery / "db").mkdir()
            init_db_dir(recovery / "db", RECOVERY_PARTITIONS)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m logstack_dagster.streaming.run")
    parser.add_argument("--workers", "-w", type=int, default=1)
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--epoch-seconds", type=float, default=5.0)
    parser.add_argument("--run-id", default="")
    parser.add_argument("--format", dest="log_format")
    parser.add_argument("--broker-timeout", type=float, default=60.0,
                        help="seconds without a broker before the run gives up")
    args = parser.parse_args(argv)
    options = FlowOptions(args.workers, args.follow, args.epoch_seconds, args.run_id,
                          args.log_format, args.broker_timeout)

    try:
        with _pipes() as pipes:
            # Under Dagster the log goes to the run's event log; alone, to stderr.
            if pipes is None:
                logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
            summary = run_flow(load_settings(), options)
            if pipes is not None:
                pipes.report_custom_message(summary)
                return 0
    except LogstackError as exc:
        print(f"logstack flow: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


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
