"""The dataflow as a cluster of several processes, against the real broker.

Whatever the number of processes and workers, the lake must hold the same rows: each
comparison matches every row of 2 processes of 2 workers with the row of 1 process of 1
worker at the same (partition, offset), in every column, over a topic of 4 partitions.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.ingest import topic
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.sample.generate import write_log
from logstack_dagster.settings import SettingsError, load_settings
from logstack_dagster.streaming import run
from logstack_dagster.streaming.batch import RawBatch
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink
from logstack_dagster_tests.conftest import count_lines, settings_env

pytestmark = pytest.mark.integration

FLOW = [sys.executable, "-m", "logstack_dagster.streaming.run"]


def _flow(settings, *args, timeout=300):
    return subprocess.run([*FLOW, *args], env=settings_env(settings), capture_output=True,
                          text=True, timeout=timeout)


def _record_count(settings):
    """Rows in the lake, requests and quarantine together (a row written twice counts twice)."""
    lake = Lake.open(settings.lake)
    return duckdb.connect().execute("SELECT " + " + ".join(
        f"(SELECT count(*) FROM read_parquet('{lake.glob(t)}'))" for t in ("requests", "quarantine")
    )).fetchone()[0]


def _differences(one, other, table):
    """Rows of `table` in lake `one` with no identical row in lake `other`: their count and
    the (partition, offset) of a few. Each row's coordinates are unique, so none either way
    means the two lakes hold the same rows."""
    globs = [Lake.open(s.lake).glob(table) for s in (one, other)]
    query = (f"FROM (SELECT * FROM read_parquet('{globs[0]}') "
             f"EXCEPT ALL SELECT * FROM read_parquet('{globs[1]}'))")
    conn = duckdb.connect()
    count = conn.execute(f"SELECT count(*) {query}").fetchone()[0]
    some = conn.execute(f'SELECT "partition", "offset" {query} ORDER BY 1, 2 LIMIT 5').fetchall()
    return count, some


def _recovery_parts(settings, cluster_id):
    store = settings.recovery_dir / cluster_id / settings.topic / "db"
    return len(list(store.glob("part-*.sqlite3")))


def _two_by_two_writes_the_rows_of_one_by_one(settings, tmp_path, log):
    """Run 1 process of 1 worker and 2 processes of 2 workers over one 4-partition topic of
    `log`, each into a lake of its own, and compare the two lakes row by row."""
    brokers = topic.Cluster(settings.brokers, {})
    topic.ensure_topic(brokers, settings.topic, 4)
    produced = topic.produce_file(brokers, settings.topic, log, 4)
    single = replace(settings, home=tmp_path / "single")
    cluster = replace(settings, home=tmp_path / "cluster")

    one = _flow(single, "--processes", "1", "--workers", "1")
    assert one.returncode == 0, one.stderr
    four = _flow(cluster, "--processes", "2", "--workers", "2")
    assert four.returncode == 0, four.stderr

    # The cluster's own result, not that of a restart after a broken link.
    summary = json.loads(four.stdout.splitlines()[-1])
    assert summary["attempts"] == 1
    assert "starting the cluster again" not in four.stderr
    assert summary["records"] == produced == count_lines(log)
    # The producer fills the partitions in turn, `SPREAD` lines each.
    filled = min(4, -(-produced // topic.SPREAD))
    assert summary["offsets"].keys() == {str(p) for p in range(filled)}
    # Each store is made for more workers than either layout has (8), so a store first
    # written by 1 x 1 would serve 2 x 2 as well.
    assert _recovery_parts(single, summary["cluster"]) == 8
    assert _recovery_parts(cluster, summary["cluster"]) == 8

    counts = {}
    for table in ("requests", "quarantine"):
        counts[table] = len(_coordinates(single, (table,)))
        if counts[table] == 0:
            assert not _coordinates(cluster, (table,))
            continue
        assert _differences(single, cluster, table) == (0, [])
        assert _differences(cluster, single, table) == (0, [])
    assert counts["requests"] + counts["quarantine"] == produced
    return summary


@pytest.mark.parametrize("name", ["first1000.log", "elastic-apache-2015.log",
                                  "nasa-jul95-part.log"])
def test_two_by_two_writes_the_rows_of_one_on_a_real_log(settings, tmp_path, shared_data,
                                                          name):
    _two_by_two_writes_the_rows_of_one_by_one(settings, tmp_path, shared_data / name)


def test_two_by_two_writes_the_rows_of_one_on_a_generated_million_lines(settings, tmp_path):
    # Regression: with one processor shared by the two workers of a process, about half
    # the 2 x 2 runs of this log failed with Bytewax's "Send thread panic" (two threads
    # used the enrichment's address cache while it overflowed 200,000 entries).
    log = tmp_path / "generated.log"
    made = subprocess.run([sys.executable, "-m", "logstack_dagster.cli", "generate",
                           "--lines", "1000000", "--seed", "5", "-o", str(log)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    summary = _two_by_two_writes_the_rows_of_one_by_one(settings, tmp_path, log)
    assert summary["offsets"].keys() == {"0", "1", "2", "3"}
    assert summary["quarantined"] > 0


def test_each_worker_thread_has_a_processor_of_its_own(shared_data):
    made = []

    def make():
        made.append(BatchProcessor(None, RowEnricher()))
        return made[-1]

    per_worker = run.PerWorker(make)
    # The first one at once, so that a bad format or GeoIP database fails before the flow.
    assert len(made) == 1
    lines = (shared_data / "first1000.log").read_bytes().splitlines()
    batch = RawBatch("t", 0, list(range(len(lines))), [0] * len(lines), lines)
    results = {}

    def work(name):
        results[name] = [per_worker(batch), per_worker(batch)]

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(made) == 2
    assert {id(p) for p in per_worker.processors.values()} == {id(p) for p in made}
    alone = BatchProcessor(None, RowEnricher())(batch)
    for first, second in results.values():
        for processed in (first, second):
            assert processed.rows.equals(alone.rows)
            assert processed.quarantine.equals(alone.quarantine)


def test_bytewax_workers_keep_their_processor_from_batch_to_batch(tmp_path, shared_data):
    # Regression: a threading.local forgets its values between two calls from a Bytewax
    # worker thread, which made a new processor (and enricher) for every batch.
    from bytewax._bytewax import cli_main
    from bytewax.testing import TestingSource

    made = []

    def make():
        made.append(BatchProcessor(None, None))
        return made[-1]

    lines = (shared_data / "first1000.log").read_bytes().splitlines()
    batches = [RawBatch("t", p, list(range(i, i + 100)), [0] * 100, lines[i:i + 100])
               for i in range(0, 600, 100) for p in (0, 1)]
    sink = LakeSink(str(tmp_path / "lake"), "c", "t", 2, "run-1")
    flow = build_flow(TestingSource(batches), sink, run.PerWorker(make))
    cli_main(flow, workers_per_process=2, epoch_interval=timedelta(seconds=1))

    assert 1 <= len(made) <= 2 < len(batches)


def test_a_worker_error_is_kept_for_the_member_to_report(monkeypatch):
    monkeypatch.setattr(run, "WORKER_ERRORS", [])
    per_worker = run.PerWorker(lambda: BatchProcessor("combined", None))
    # Fewer offsets than records: the batch cannot be taken apart.
    broken = RawBatch("t", 0, [], [], [b'1.2.3.4 - - [22/Jan/2019:03:56:14 +0330] "GET / '
                                       b'HTTP/1.1" 200 5 "-" "curl/8"'])
    with pytest.raises(IndexError) as raised:
        per_worker(broken)
    assert run.WORKER_ERRORS == [raised.value]


@pytest.mark.parametrize("workers", [1, 2])
def test_killing_one_process_fails_the_run_and_a_rerun_completes(settings, cluster, tmp_path,
                                                                 workers):
    log = tmp_path / "generated.log"
    write_log(log, 200_000, seed=9)
    topic.ensure_topic(cluster, settings.topic, 4)
    produced = topic.produce_file(cluster, settings.topic, log, 4)

    launcher = subprocess.Popen([*FLOW, "--processes", "2", "--workers", str(workers),
                                 "--epoch-seconds", "1", "--commit-seconds", "0"],
                                env=settings_env(settings),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    members = _children(launcher.pid, 2)
    # Kill once the cluster has committed something, so that the rerun resumes mid-topic.
    deadline = time.monotonic() + 60
    while not list(Path(settings.lake).rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(members[1], signal.SIGKILL)
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode != 0
    assert "dataflow process 1 of 2 was killed by SIGKILL" in err
    assert "starting the cluster again" not in err
    assert not any(_alive(pid) for pid in members)
    before = len(_coordinates(settings))
    assert 0 < before < produced

    rerun = _flow(settings, "--processes", "2", "--workers", str(workers))
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.splitlines()[-1])["attempts"] == 1
    assert _record_count(settings) == len(_coordinates(settings)) == produced
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    assert reconcile(Manifest(Lake.open(settings.lake), cluster_id, settings.topic)).passed


def test_recovery_store_too_small_for_the_workers_is_named(settings, cluster, shared_data):
    topic.ensure_topic(cluster, settings.topic, 2)
    topic.produce_file(cluster, settings.topic, shared_data / "dash-request.log", 2)
    assert _flow(settings).returncode == 0
    result = _flow(settings, "--processes", "3", "--workers", "3")
    assert result.returncode == 1
    assert "made for 8 workers, fewer than the 9 asked for" in result.stderr
    assert "Traceback" not in result.stderr


def _coordinates(settings, tables=("requests", "quarantine")):
    """The distinct (partition, offset) of the rows of `tables` in the lake."""
    lake = Lake.open(settings.lake)
    present = [t for t in tables if any(Path(settings.lake, t).rglob("*.parquet"))]
    if not present:
        return set()
    return set(duckdb.connect().execute(
        " UNION ALL ".join(f"SELECT \"partition\", \"offset\" FROM "
                           f"read_parquet('{lake.glob(t)}')" for t in present)
    ).fetchall())


def _children(pid, count, timeout=30.0):
    """The pids of the first `count` child processes of `pid`, once they have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        if len(found) >= count:
            return found[:count]
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not start {count} children")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_reaches_every_process_and_nothing_is_lost(settings, cluster, tmp_path):
    log = tmp_path / "generated.log"
    write_log(log, 50_000, seed=4)
    topic.ensure_topic(cluster, settings.topic, 4)
    produced = topic.produce_file(cluster, settings.topic, log, 4)

    # Following the topic, the run would never end by itself.
    launcher = subprocess.Popen([*FLOW, "--processes", "2", "--follow", "--epoch-seconds", "1",
                                 "--commit-seconds", "0"],
                                env=settings_env(settings), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    members = _children(launcher.pid, 2)
    time.sleep(6.0)
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in err
    assert not any(_alive(pid) for pid in members)

    rerun = _flow(settings, "--processes", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert len(_coordinates(settings)) == produced


def test_process_count_from_the_environment_is_checked(tmp_path):
    env = {"LOGSTACK_HOME": str(tmp_path)}
    assert load_settings({**env, "LOGSTACK_FLOW_PROCESSES": "3"}).flow_processes == 3
    assert load_settings(env).flow_processes == 1
    with pytest.raises(SettingsError, match="LOGSTACK_FLOW_PROCESSES .* not 'two'"):
        load_settings({**env, "LOGSTACK_FLOW_PROCESSES": "two"})

    bad = subprocess.run([sys.executable, "-m", "logstack_dagster.cli", "flow", "-p", "0"],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "expected a whole number >= 1, not '0'" in bad.stderr
    assert "Traceback" not in bad.stderr
