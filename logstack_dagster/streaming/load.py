"""`logstack load`: one file into the lake in one go, producing and ingesting at once.

The dataflow starts first, following the topic; this process produces the file meanwhile.
When every line is in the topic, the true end offset of each partition goes into a small
file the dataflow's sources watch (`source.write_until`): each partition stops once it is
idle at its end, so the run ends when the last line is in the lake or the quarantine. Both
halves keep their guarantees: the producer's (every line taken by the broker, or an
error) and the dataflow's (each record once, across crashes; a rerun of `logstack flow`
takes up where a failed load stopped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logstack_dagster.errors import LogstackError
from logstack_dagster.ingest import topic
from logstack_dagster.lake.layout import Lake, LakeError
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.settings import Settings
from logstack_dagster.streaming.run import (
    EXIT_BATCH_FAILED,
    check_layout,
    check_not_ingesting,
    check_settings,
    check_writable,
    ingest_lock_paths,
    refuse_remade_topic,
)
from logstack_dagster.streaming.source import write_until


@dataclass(frozen=True)
class Loaded:
    """What a load did: lines produced and the dataflow's summary of what it committed."""

    produced: int
    summary: dict


def load_file(settings: Settings, path: Path, *, processes: int = 1, workers: int = 1,
              log_format: str | None = None,
              progress: Callable[[topic.Progress], None] | None = None,
              interval: float = 5.0) -> Loaded:
    """Produce `path` into the topic while the dataflow ingests it; return both counts.

    Raises LogstackError naming what failed: the broker, the producer, or the dataflow
    (with its own error line, or how it was killed).
    """
    check_layout(processes, workers)
    check_settings(settings, log_format)
    # A lake the dataflow cannot write fails before a line is produced: produced lines
    # are in the topic for good, and a second `load` after fixing the lake would add them
    # again.
    try:
        lake = Lake.open(settings.lake)
        check_writable(settings.lake)
    except (LakeError, LogstackError) as exc:
        raise LogstackError(f"{exc}; nothing was produced") from None
    cluster = topic.resolve_cluster(settings)
    topic.wait_reachable(cluster)
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
    # Before producing: once the new records pass the old end, nothing tells them apart.
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    refuse_remade_topic(cluster, settings.topic, partitions,
                        Manifest(lake, cluster_id, settings.topic))
    # A dataflow already reading the topic would take these lines in, and this load
    # would fail after producing them: a second try would produce them again.
    try:
        check_not_ingesting(ingest_lock_paths(settings, cluster_id, lake))
    except LogstackError as exc:
        raise LogstackError(f"{exc}; nothing was produced") from None

    settings.home.mkdir(parents=True, exist_ok=True)
    until = settings.home / f"load-{uuid.uuid4().hex[:12]}.until.json"
    command = [sys.executable, "-m", "logstack_dagster.streaming.run", "--follow",
               "--until", str(until), "--processes", str(processes),
               "--workers", str(workers), "--progress-seconds", "0"]
    if log_format:
        command += ["--format", log_format]
    env = {**os.environ, "KAFKA_BROKERS": cluster.brokers, "KAFKA_TOPIC": settings.topic,
           "LOGSTACK_HOME": str(settings.home), "LOGSTACK_LAKE": settings.lake}
    errors = settings.home / f"{until.name}.stderr"
    try:
        with open(errors, "wb") as stderr:
            # The dataflow must not outlive this process, however it ends: it would keep
            # the topic's ingest lock, following a topic nobody will finish.
            flow = subprocess.Popen([*command, "--parent-pid", str(os.getpid())], env=env,
                                    stdout=subprocess.PIPE, stderr=stderr)
        try:
            produced = topic.produce_file(cluster, settings.topic, path, partitions, progress,
                                          interval=interval)
            if flow.poll() is None:
                write_until(until, topic.exact_end_offsets(cluster, settings.topic))
            out, _ = flow.communicate()
        except LogstackError as exc:
            _stop(flow)
            raise LogstackError(f"{exc}; the dataflow was stopped: `logstack flow` ingests "
                                "what reached the topic") from None
        except BaseException:
            _stop(flow)
            raise
        failure = errors.read_text(errors="replace").strip()
    finally:
        for leftover in (until, until.with_name(until.name + ".tmp"), errors):
            leftover.unlink(missing_ok=True)

    if flow.returncode != 0:
        # A batch that failed to process fails `logstack flow` too; its message says so.
        hint = ("" if flow.returncode == EXIT_BATCH_FAILED
                else "; `logstack flow` ingests what is left")
        raise LogstackError(f"produced {produced:,} lines, but the dataflow failed "
                            f"({_ended(flow.returncode)}): {_reason(failure)}{hint}")
    return Loaded(produced, json.loads(out.decode().strip().splitlines()[-1]))


def _stop(flow: subprocess.Popen) -> None:
    flow.terminate()
    flow.wait()


def _ended(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def _reason(stderr: str) -> str:
    """The dataflow's own error line, else its last line."""
    lines = stderr.splitlines()
    errors = [line for line in lines if "error:" in line or " ERROR " in line]
    last = (errors or lines or ["no message"])[-1]
    return last.split("error: ", 1)[-1] if "error: " in last else last
