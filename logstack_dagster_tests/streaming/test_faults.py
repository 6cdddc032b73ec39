"""Faults during ingest: killed dataflows, a paused or lost broker, an unwritable lake.

Each test counts: every record of the topic ends up once in the lake or the quarantine.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.ingest import broker, topic
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.sample.generate import write_log
from logstack_dagster_tests.conftest import settings_env

pytestmark = pytest.mark.integration

FLOW = [sys.executable, "-m", "logstack_dagster.streaming.run"]
LINE = b'203.0.113.9 - - [22/Jan/2019:03:56:14 +0330] "GET / HTTP/1.1" 200 5 "-" "x"'


def _lake_counts(settings):
    """(records, distinct coordinates, highest offset + 1 summed over partitions)."""
    lake = Lake.open(settings.lake)
    both = " UNION ALL ".join(
        f"SELECT \"partition\", \"offset\" FROM read_parquet('{lake.glob(table)}')"
        for table in ("requests", "quarantine")
        if any(Path(settings.lake, table).rglob("*.parquet")))
    if not both:
        return 0, 0, None
    return duckdb.connect().execute(f"""
        WITH everything AS ({both})
        SELECT count(*),
               (SELECT count(*) FROM (SELECT DISTINCT "partition", "offset" FROM everything)),
               (SELECT sum(ends) FROM (SELECT max("offset") + 1 AS ends FROM everything
                                       GROUP BY "partition"))
        FROM everything
    """).fetchone()


def _produce_sample(settings, cluster, tmp_path, lines, partitions=4):
    log = tmp_path / "sample.log"
    write_log(log, lines, seed=3)
    topic.ensure_topic(cluster, settings.topic, partitions)
    return topic.produce_file(cluster, settings.topic, log, partitions)


def test_sigkill_at_random_moments_loses_and_doubles_nothing(settings, cluster, tmp_path):
    # Enough lines that the first run is still going at its kill, which comes within 2 s.
    produced = _produce_sample(settings, cluster, tmp_path, 400_000)
    rng = random.Random(11)
    killed = 0
    for _ in range(4):
        process = subprocess.Popen([*FLOW, "--workers", "2", "--epoch-seconds", "1"],
                                   env=settings_env(settings), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=rng.uniform(0.5, 2.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed += 1

    final = subprocess.run(FLOW, env=settings_env(settings), capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    assert killed >= 1
    assert _lake_counts(settings) == (produced, produced, produced)
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    assert reconcile(Manifest(Lake.open(settings.lake), cluster_id, settings.topic)).passed


def test_a_kill_after_snapshots_but_before_a_commit_loses_nothing(settings, cluster, tmp_path):
    """The recovery store says every record was read; the lake has none of them. The next
    run must start from the lake's commits, not from the recovery store."""
    produced = _produce_sample(settings, cluster, tmp_path, 5_000, partitions=2)
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    manifest = Manifest(Lake.open(settings.lake), cluster_id, settings.topic)
    following = subprocess.Popen([*FLOW, "--follow", "--epoch-seconds", "0.2",
                                  "--commit-seconds", "3600"], env=settings_env(settings),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Each partition's first batch holds all its records; the format is logged once it
        # is parsed. Snapshots every 0.2 s then say both partitions were read to the end.
        detected = 0
        for line in following.stderr:
            detected += "detected the" in line
            if detected == 2:
                break
        time.sleep(2)
    finally:
        following.send_signal(signal.SIGKILL)
        following.wait()
    assert detected == 2
    assert list(manifest.commits()) == []

    final = subprocess.run(FLOW, env=settings_env(settings), capture_output=True, text=True,
                           timeout=300)

    assert final.returncode == 0, final.stderr
    assert _lake_counts(settings) == (produced, produced, produced)


# Runs the dataflow, but SIGKILLs it the moment its first commit record is written, before
# the batch's files are moved into place.
_KILL_AT_PUBLISH = """
import os, signal, sys
from logstack_dagster.lake import manifest
manifest.Manifest.publish = lambda self, commit: os.kill(os.getpid(), signal.SIGKILL)
from logstack_dagster.streaming.run import main
sys.exit(main([]))
"""


def test_a_batch_committed_but_not_moved_into_place_is_seen_after_a_caught_up_run(
        settings, cluster, tmp_path):
    """The next run starts where the commits end, so the partition gets no records and its
    sink partition is never made: the recovery it did on start must happen anyway."""
    produced = _produce_sample(settings, cluster, tmp_path, 1_000, partitions=1)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT_PUBLISH], env=settings_env(settings),
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    manifest = Manifest(Lake.open(settings.lake), cluster_id, settings.topic)
    assert sum(c.records for c in manifest.commits()) == produced
    assert _lake_counts(settings)[0] == 0

    again = subprocess.run(FLOW, env=settings_env(settings), capture_output=True, text=True,
                           timeout=300)

    assert again.returncode == 0, again.stderr
    assert _lake_counts(settings) == (produced, produced, produced)
    assert not list((Path(settings.lake) / "_staging").iterdir())


def test_a_partition_gone_quiet_is_written_commit_seconds_after_its_last_record(
        settings, cluster, tmp_path):
    """Bytewax calls a sink partition only when items come to it: the rows of a partition
    that went quiet stayed in its buffer until the run stopped."""
    topic.ensure_topic(cluster, settings.topic, 2)
    # The epoch the records come in ends long before they have waited 10 s.
    following = subprocess.Popen([*FLOW, "--follow", "--epoch-seconds", "1",
                                  "--commit-seconds", "10"],
                                 env=settings_env(settings), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        topic.produce(cluster, settings.topic, [LINE] * 10, 2)
        deadline = time.monotonic() + 60
        while _lake_counts(settings)[0] < 10 and time.monotonic() < deadline:
            assert following.poll() is None
            time.sleep(0.5)
        assert _lake_counts(settings) == (10, 10, 10)
    finally:
        following.send_signal(signal.SIGKILL)
        following.wait()


def test_broker_paused_mid_run_then_resumed(settings, cluster, tmp_path, broker_home):
    produced = _produce_sample(settings, cluster, tmp_path, 200_000, partitions=2)
    pid = broker.read_state(broker_home / "broker").pid
    process = subprocess.Popen(FLOW, env=settings_env(settings), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(4)
    finally:
        os.kill(pid, signal.SIGCONT)

    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert _lake_counts(settings) == (produced, produced, produced)


def test_lost_broker_ends_the_run_with_its_address_and_keeps_what_was_committed(
        tmp_path, cluster):
    from logstack_dagster.settings import Settings

    home = tmp_path / "own-broker"
    state = broker.start(home)
    settings = Settings(home=tmp_path / "home", brokers=state.address, topic="lost")
    own = topic.Cluster(state.address, {})
    try:
        # Enough lines, and commits early enough, that the broker goes while the flow
        # still has records to fetch: it read 300,000 before a kill after a 1 s epoch.
        produced = _produce_sample(settings, own, tmp_path, 500_000, partitions=2)
        process = subprocess.Popen([*FLOW, "--broker-timeout", "3", "--epoch-seconds", "0.2",
                                    "--commit-seconds", "0"],
                                   env=settings_env(settings), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        # Lose the broker once the flow has committed something, mid-topic.
        lake = settings.lake
        deadline = time.monotonic() + 60
        while not list(Path(lake).rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(state.pid, signal.SIGKILL)
    finally:
        broker.stop(home)

    out, err = process.communicate(timeout=120)
    assert process.returncode != 0, (out[-500:], err[-3000:])
    assert state.address in err
    assert "Traceback" not in err
    records, distinct, _ = _lake_counts(settings)
    assert 0 < records == distinct <= produced


def test_unwritable_lake_is_named_and_nothing_is_read(settings, cluster, tmp_path):
    from dataclasses import replace

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = replace(settings, lake_uri=str(blocker / "lake"))
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce(cluster, settings.topic, [b"x"] * 3, 1)

    result = subprocess.run(FLOW, env=settings_env(bad), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert str(blocker / "lake") in result.stderr
    assert "Traceback" not in result.stderr

    # With the path mended, the next run reads every record.
    good = subprocess.run(FLOW, env=settings_env(settings), capture_output=True, text=True,
                          timeout=120)
    assert good.returncode == 0, good.stderr
    assert _lake_counts(settings)[0] == 3
