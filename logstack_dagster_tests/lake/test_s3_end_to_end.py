"""The main job with the lake on an S3-compatible server (moto, on 127.0.0.1).

Produce -> dataflow -> metrics through the same Dagster path as `logstack demo`, with
Dagster's storage in SQLite and in PostgreSQL (deploy/dagster-postgres.yaml), then a
dataflow killed mid-run and run again: every record must be in the lake or the
quarantine exactly once, and the metric totals must equal the lines produced.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
from dagster import AssetKey, DagsterRunStatus

from logstack_dagster.ingest import topic
from logstack_dagster.lake.duck import connect
from logstack_dagster.lake.layout import MANIFEST, QUARANTINE, ROWS, STAGING, Lake
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.lake.reconcile import reconcile
from logstack_dagster.sample.generate import write_log
from logstack_dagster_tests.conftest import count_lines, settings_env
from logstack_dagster_tests.lake.conftest import SECRET_KEY

pytestmark = pytest.mark.integration

FLOW = [sys.executable, "-m", "logstack_dagster.streaming.run"]


def _env(settings) -> dict[str, str]:
    env = settings_env(settings)
    env.update(LOGSTACK_LAKE=settings.lake_uri, LOGSTACK_S3_ENDPOINT=settings.s3_endpoint,
               LOGSTACK_S3_REGION=settings.s3_region)
    return env


def _exactly_once(settings, produced: int) -> tuple[int, int]:
    """Assert every record is one row or one quarantined line; return both counts."""
    conn = connect(Lake.open(settings.lake), None)
    rows, quarantined, distinct, ends = conn.execute("""
        WITH everything AS (SELECT "partition", "offset" FROM requests
                            UNION ALL SELECT "partition", "offset" FROM quarantine)
        SELECT (SELECT count(*) FROM requests), (SELECT count(*) FROM quarantine),
               (SELECT count(*) FROM (SELECT DISTINCT * FROM everything)),
               (SELECT sum(e) FROM (SELECT max("offset") + 1 AS e FROM everything
                                    GROUP BY "partition"))
    """).fetchone()
    assert rows + quarantined == distinct == ends == produced
    return rows, quarantined


def _objects(lake: Lake, folder: str) -> list[str]:
    return [p for p in lake.list_files(lake.path(folder), recursive=True)
            if p.endswith((".parquet", ".json"))]


def _assert_no_orphans(settings, cluster) -> None:
    """Every Parquet object in the tables is named by a commit; no note is left."""
    lake = Lake.open(settings.lake)
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    manifest = Manifest(lake, cluster_id, settings.topic)
    named = {lake.path(f.path) for c in manifest.commits() for f in c.files}
    assert set(_objects(lake, ROWS) + _objects(lake, QUARANTINE)) == named
    assert _objects(lake, STAGING) == []
    assert reconcile(manifest).passed


def _assert_dagster_recorded(instance, metric_runs: list[str], rows: int,
                             quarantined: int) -> None:
    """The instance's storage holds every run, and materializations that add up."""
    runs = instance.get_runs()
    assert sorted((r.job_name, r.status) for r in runs) == sorted(
        [("ingest_job", DagsterRunStatus.SUCCESS)]
        + [("hourly_metrics_job", DagsterRunStatus.SUCCESS)] * len(metric_runs))
    assert set(metric_runs) <= {r.run_id for r in runs}

    # The ingest run reports one lake materialization per hour it wrote; the metric runs
    # then built exactly those hours.
    lake_hours = instance.fetch_materializations(AssetKey("requests_lake"), limit=1000).records
    counted = [m.asset_materialization.metadata for m in lake_hours]
    assert sum(m["rows"].value for m in counted) == rows
    assert sum(m["quarantined"].value for m in counted) == quarantined
    assert {m.partition_key for m in lake_hours} == instance.get_materialized_partitions(
        AssetKey("hourly_traffic"))


def test_real_sample_through_dagster_with_the_lake_on_s3(
        s3_settings, dagster_instance, cluster, shared_data):
    from logstack_dagster.demo import materialize_lake
    from logstack_dagster.materialize import run_ingest

    settings, instance = s3_settings, dagster_instance
    path = shared_data / "first1000.log"
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
    produced = topic.produce_file(cluster, settings.topic, path, partitions)

    summary = run_ingest(instance, settings)
    runs = materialize_lake(settings, instance)

    assert produced == count_lines(path) == summary["records"]
    rows, quarantined = _exactly_once(settings, produced)
    assert (rows, quarantined) == (summary["rows"], summary["quarantined"])
    _assert_no_orphans(settings, cluster)
    assert len(runs) >= 1
    assert not (settings.home / "lake").exists()

    # The metric tables, built from the objects on S3, add up to the lines produced.
    metrics = connect(Lake.open(settings.lake), settings.duckdb_path)
    requests, failed = metrics.execute(
        "SELECT sum(requests), sum(quarantined) FROM hourly_traffic").fetchone()
    assert (requests, failed) == (rows, quarantined)
    assert metrics.execute("SELECT sum(requests) FROM hourly_status_codes").fetchone()[0] == rows
    _assert_dagster_recorded(instance, runs, rows, quarantined)

    # `logstack query` reads the same lake from the same settings.
    answer = subprocess.run(
        [sys.executable, "-m", "logstack_dagster.cli", "query",
         "SELECT (SELECT count(*) FROM requests) AS rows, "
         "(SELECT sum(requests) FROM hourly_traffic) AS counted", "--json"],
        env=_env(settings), capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"rows": rows, "counted": rows}

    # The credentials are nowhere: not in the manifest, not in Dagster's event log.
    lake = Lake.open(settings.lake)
    for record in _objects(lake, MANIFEST):
        assert SECRET_KEY not in lake.read(record).decode()
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            assert SECRET_KEY not in str(entry)


def test_dataflow_killed_mid_run_on_s3_then_rerun_counts_every_line_once(
        s3_settings, cluster, tmp_path):
    settings = s3_settings
    log = tmp_path / "sample.log"
    # Long enough that a run resumed after a kill is still reading at its first commit.
    write_log(log, 200_000, seed=5)
    partitions = topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, partitions)
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    manifest = Manifest(Lake.open(settings.lake), cluster_id, settings.topic)

    kills = []
    for _ in range(2):
        before = sum(c.records for c in manifest.commits())
        process = subprocess.Popen([*FLOW, "--epoch-seconds", "0.2", "--commit-seconds", "0"],
                                   env=_env(settings), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        # Kill it once it has committed something more, while it is still reading.
        deadline = time.monotonic() + 120
        while (sum(c.records for c in manifest.commits()) == before
               and process.poll() is None and time.monotonic() < deadline):
            time.sleep(0.1)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills.append(sum(c.records for c in manifest.commits()))
        process.communicate(timeout=60)

    final = subprocess.run(FLOW, env=_env(settings), capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert kills and all(0 < committed < produced for committed in kills), kills
    _exactly_once(settings, produced)
    _assert_no_orphans(settings, cluster)
