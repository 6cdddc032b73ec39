"""logstack under a live `dagster dev`: webserver and daemon, driven through GraphQL.

The raw-topic sensor ingests a real log, a partition backfill builds the hourly metrics,
the automation sensor rebuilds an hour that late lines arrive for, and the asset lineage
renders in a headless Chromium. Sensors start stopped, so the tests start them.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.ingest.topic import Cluster
from logstack_dagster.lake.layout import Lake, hour_key
from logstack_dagster.lake.manifest import Manifest
from logstack_dagster.materialize import lake_hours
from logstack_dagster.metrics.tables import METRICS, TRAFFIC
from logstack_dagster.settings import Settings
from logstack_dagster_tests.conftest import count_lines, settings_env
from logstack_dagster_tests.dagster_server import DagsterServer, dagster_dev, wait_for

pytestmark = pytest.mark.integration

INGEST_SENSOR = "raw_topic_sensor"
AUTOMATION_SENSOR = "default_automation_condition_sensor"
METRIC_ASSETS = [m.name for m in METRICS]
# The sensor ticks at most every 30 s, the backfill daemon looks every 30 s; a run
# takes 10-20 s on two cores.
RUN_TIMEOUT = 120

# Late lines for the first hour of first1000.log (2019-01-22 00:00 UTC), in its format.
LATE_HOUR = "2019-01-22-00:00"
LATE_LINES = [
    f'198.51.100.{n} - - [22/Jan/2019:03:40:0{n} +0330] "GET /late/{n} HTTP/1.1" 200 {n}0 '
    f'"-" "Mozilla/5.0 (X11; Linux x86_64)" "-"'.encode()
    for n in range(1, 4)
]


@dataclass
class Built:
    """What the module's server was made to do: ingest the log and backfill its hours."""

    server: DagsterServer
    settings: Settings
    cluster: Cluster
    lines: int
    hours: list[str]
    ingest_run: dict
    backfill_id: str
    backfill_runs: list[dict]


@pytest.fixture(scope="module")
def live_settings(broker_address: str, tmp_path_factory) -> Settings:
    """Settings of this module's own: a home and a topic on the session's broker."""
    return Settings(home=tmp_path_factory.mktemp("live") / "home", brokers=broker_address,
                    topic=f"t{uuid.uuid4().hex[:10]}", partitions=2)


@pytest.fixture(scope="module")
def server(live_settings: Settings, tmp_path_factory) -> DagsterServer:
    folder = tmp_path_factory.mktemp("dagster-dev")
    with dagster_dev(folder / "home", settings_env(live_settings),
                     folder / "dagster-dev.log") as running:
        yield running


@pytest.fixture(scope="module")
def built(server: DagsterServer, live_settings: Settings, shared_data: Path) -> Built:
    """Produce first1000.log, let the sensor ingest it, backfill every hour it holds."""
    log = shared_data / "first1000.log"
    cluster = Cluster(live_settings.brokers, {})
    partitions = topic.ensure_topic(cluster, live_settings.topic, live_settings.partitions)
    topic.produce_file(cluster, live_settings.topic, log, partitions)

    assert server.start_sensor(INGEST_SENSOR) == "RUNNING"
    ingest_run, = server.wait_for_runs(
        "the sensor's ingest run", lambda: server.runs(job="ingest_job"), RUN_TIMEOUT)

    hours = _lake_hours(live_settings, cluster)
    backfill_id = server.launch_asset_backfill(
        METRIC_ASSETS, hours, {"execution": {"config": {"in_process": {}}}})
    backfill_runs = server.wait_for_runs(
        f"the runs of backfill {backfill_id}",
        lambda: server.runs(tags={"dagster/backfill": backfill_id}), RUN_TIMEOUT)
    wait_for(f"backfill {backfill_id} to complete", lambda: _done(server, backfill_id),
             RUN_TIMEOUT, every=2.0)
    return Built(server, live_settings, cluster, count_lines(log), hours, ingest_run,
                 backfill_id, backfill_runs)


def test_sensor_ingests_and_a_backfill_builds_every_hour(built: Built):
    assert built.ingest_run["tags"]["dagster/sensor_name"] == INGEST_SENSOR
    assert built.ingest_run["tags"]["logstack/offsets"].endswith(
        ",".join(f"{p}:{e}" for p, e in sorted(
            topic.end_offsets(built.cluster, built.settings.topic).items())))
    assert built.server.backfill_status(built.backfill_id) == "COMPLETED_SUCCESS"
    assert built.hours == ["2019-01-22-00:00", "2019-01-22-04:00"]

    with duckdb.connect(str(built.settings.duckdb_path), read_only=True) as conn:
        requests, quarantined = conn.execute(
            f"SELECT sum(requests), sum(quarantined) FROM {TRAFFIC.name}").fetchone()
        status_total = conn.execute("SELECT sum(requests) FROM hourly_status_codes").fetchone()
        built_hours = conn.execute(
            f"SELECT DISTINCT strftime(hour AT TIME ZONE 'UTC', '%Y-%m-%d-%H:00') "
            f"FROM {TRAFFIC.name} ORDER BY 1").fetchall()
    assert requests + quarantined == built.lines
    assert status_total[0] == requests
    assert [h for h, in built_hours] == built.hours

    # A run over a partition range records each check's evaluation without a partition,
    # and leaves the per-partition records it planned as SKIPPED (Dagster 1.13).
    for check in ("parse_failure_share", "metric_totals_match_lake"):
        executions = built.server.check_executions(TRAFFIC.name, check)
        for run in built.backfill_runs:
            statuses = {e["status"] for e in executions if e["runId"] == run["runId"]}
            assert "SUCCEEDED" in statuses, (check, run["runId"], statuses)
            assert not statuses & {"FAILED", "EXECUTION_FAILED"}, (check, statuses)


def test_late_lines_rebuild_only_their_hour(built: Built):
    server, settings = built.server, built.settings
    before = _traffic(settings)
    # Its first tick only takes stock; lines that landed before it would go unnoticed.
    assert server.start_sensor(AUTOMATION_SENSOR) == "RUNNING"
    wait_for("the automation sensor's first tick",
             lambda: server.sensor_ticks(AUTOMATION_SENSOR) or None, 60)

    topic.produce(built.cluster, settings.topic, LATE_LINES, 1)
    server.wait_for_runs(
        "the sensor's ingest of the late lines",
        lambda: _if_more(server.runs(job="ingest_job"), 2), RUN_TIMEOUT)
    rebuilds = server.wait_for_runs(
        "the automation run for the late hour",
        lambda: server.runs(tags={"dagster/from_automation_condition": "true"}),
        RUN_TIMEOUT)

    assert {r["tags"].get("dagster/partition") for r in rebuilds} == {LATE_HOUR}
    after = _traffic(settings)
    assert after[LATE_HOUR] == before[LATE_HOUR] + len(LATE_LINES)
    assert {h: n for h, n in after.items() if h != LATE_HOUR} == {
        h: n for h, n in before.items() if h != LATE_HOUR}


def _lake_hours(settings: Settings, cluster: Cluster) -> list[str]:
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    commits = list(Manifest(Lake.open(settings.lake), cluster_id, settings.topic).commits())
    return [hour_key(h) for h in lake_hours(commits)]


def _done(server: DagsterServer, backfill_id: str) -> str | None:
    status = server.backfill_status(backfill_id)
    return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None


def _if_more(runs: list[dict], count: int) -> list[dict]:
    return runs if len(runs) >= count else []


def _traffic(settings: Settings) -> dict[str, int]:
    """Requests per hour in hourly_traffic, keyed like partitions."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT strftime(hour AT TIME ZONE 'UTC', '%Y-%m-%d-%H:00'), requests "
            f"FROM {TRAFFIC.name}").fetchall()
    return dict(rows)
