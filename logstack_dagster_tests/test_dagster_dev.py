"""logstack under a live `dagster dev`: webserver and daemon, driven through GraphQL.

The raw-topic sensor ingests a real log, a partition backfill builds the hourly metrics,
the asset lineage renders in a headless Chromium, the automation sensor rebuilds an hour
that late lines arrive for, the run queue keeps ingest runs apart, and a failed ingest
raises an alert and is re-executed. The sensors run by default; each test still starts
the one it needs, which is a no-op then and makes the test say what it relies on. The
tests run in file order on one server.
"""

from __future__ import annotations

import re
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
from logstack_dagster_tests.browser import CHROMIUM, NO_CHROMIUM, artifact_dir, chromium_page
from logstack_dagster_tests.conftest import count_lines, settings_env
from logstack_dagster_tests.dagster_server import DagsterServer, dagster_dev, wait_for
from logstack_dagster_tests.test_alerts import Webhook

pytestmark = pytest.mark.integration

INGEST_SENSOR = "raw_topic_sensor"
AUTOMATION_SENSOR = "late_data_automation_sensor"
ALERT_SENSOR = "run_failure_alert_sensor"
METRIC_ASSETS = [m.name for m in METRICS]
# Both sensors tick every 5 s here (30 s by default); the backfill daemon looks about
# every 30 s; a run takes 10-20 s on two cores.
SENSOR_INTERVAL = 5
RUN_TIMEOUT = 120


def _lines(clock: str, path: str, count: int) -> list[bytes]:
    """`count` lines in first1000.log's format, at `clock` on 22 January 2019 (+0330)."""
    return [
        f'198.51.100.{n} - - [22/Jan/2019:{clock}:0{n} +0330] "GET /{path}/{n} HTTP/1.1" '
        f'200 {n}0 "-" "Mozilla/5.0 (X11; Linux x86_64)" "-"'.encode()
        for n in range(1, count + 1)
    ]


# Late lines for the first hour of first1000.log (2019-01-22 00:00 UTC).
LATE_HOUR = "2019-01-22-00:00"
LATE_LINES = _lines("03:40", "late", 3)
# Lines for an hour of their own (2019-01-22 09:00 UTC), ingested by a run that fails.
RETRIED_LINES = _lines("12:40", "retried", 2)


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
def webhook() -> Webhook:
    """The alert webhook the server posts to, on 127.0.0.1."""
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def server(live_settings: Settings, webhook: Webhook, tmp_path_factory) -> DagsterServer:
    folder = tmp_path_factory.mktemp("dagster-dev")
    env = {**settings_env(live_settings), "LOGSTACK_ALERT_WEBHOOK": webhook.url,
           "LOGSTACK_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL)}
    with dagster_dev(folder / "home", env, folder / "dagster-dev.log") as running:
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
    backfill_id = server.launch_asset_backfill(METRIC_ASSETS, hours)
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


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_lineage_page_shows_the_topic_the_lake_and_every_metric(built: Built):
    wanted = {"raw_topic", "requests_lake", *METRIC_ASSETS}
    screenshot = artifact_dir() / "dagster-lineage.png"
    # Tall enough that the whole graph fits at a zoom where nodes show their full names.
    with chromium_page(width=1800, height=2400) as page:
        page.goto(f"{built.server.url}/assets/raw_topic?view=lineage"
                  "&lineageScope=downstream&lineageDepth=3",
                  timeout=60_000)
        names = page.locator("[class*=AssetNode_assetName]")
        loading = page.get_by_text(re.compile(r"^Loading"))
        try:
            shown = wait_for("every asset's node on the lineage page",
                             lambda: _if_all(wanted, set(names.all_inner_texts())), 60)
            # Each node then fetches its partition and check status.
            wait_for("the nodes' statuses", lambda: loading.count() == 0 or None, 30)
            shown_text = page.inner_text("body")
        finally:
            page.screenshot(path=str(screenshot))
            print(f"lineage screenshot: {screenshot}")

    assert wanted <= shown
    assert screenshot.stat().st_size > 10_000
    # The ingest sensor reported the topic's offsets when it launched the ingest.
    assert "Never observed" not in shown_text


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


def test_the_run_queue_never_runs_two_ingests_at_once(built: Built):
    server = built.server
    # Both wait in the queue at once; the daemon may start up to four runs, but only one
    # with the logstack/ingest tag (dagster.yaml).
    launched = {server.launch_run("ingest_job") for _ in range(2)}
    runs = server.wait_for_runs(
        "two ingest runs launched together",
        lambda: [r for r in server.runs(job="ingest_job") if r["runId"] in launched],
        RUN_TIMEOUT)

    first, second = sorted(runs, key=lambda r: r["startTime"])
    assert first["endTime"] <= second["startTime"], (first, second)


def test_a_failed_ingest_alerts_and_its_re_execution_finishes_the_work(
        built: Built, webhook: Webhook):
    server, settings = built.server, built.settings
    assert server.start_sensor(ALERT_SENSOR) == "RUNNING"
    wait_for("the alert sensor's first tick",
             lambda: server.sensor_ticks(ALERT_SENSOR) or None, 60)
    earlier = {r["runId"] for r in server.runs(job="ingest_job")}

    # A file where the dataflow stages its Parquet files: the run fails, even as root.
    staging = Path(settings.lake) / "_staging"
    aside = staging.with_name("_staging.aside")
    if staging.exists():
        staging.rename(aside)
    staging.write_text("in the way\n")
    try:
        topic.produce(built.cluster, settings.topic, RETRIED_LINES, 1)
        failed, = server.wait_for_runs(
            "the sensor's ingest run into a broken lake",
            lambda: [r for r in server.runs(job="ingest_job") if r["runId"] not in earlier],
            RUN_TIMEOUT, succeed=False)
        assert failed["status"] == "FAILURE"
        alert = wait_for("the alert for the failed run", lambda: next(
            (a for a in webhook.received if a["details"].get("run_id") == failed["runId"]),
            None), 60)
    finally:
        staging.unlink()
        if aside.exists():
            aside.rename(staging)
    assert alert["title"] == "logstack: run of ingest_job failed"
    # The dataflow's own reason, not only that its process exited with code 1.
    assert alert["details"]["error"].startswith(f"the lake at {settings.lake} is not writable")

    retry_id = server.reexecute(failed["runId"])
    retry, = server.wait_for_runs(
        "the re-execution of the failed ingest",
        lambda: [r for r in server.runs(job="ingest_job") if r["runId"] == retry_id],
        RUN_TIMEOUT)
    assert retry["parentRunId"] == failed["runId"]
    assert retry["tags"]["logstack/offsets"] == failed["tags"]["logstack/offsets"]
    cluster_id = topic.topic_metadata(built.cluster, settings.topic)[0]
    ingested = Manifest(Lake.open(settings.lake), cluster_id, settings.topic).next_offsets()
    assert ingested == topic.exact_end_offsets(built.cluster, settings.topic)


def _lake_hours(settings: Settings, cluster: Cluster) -> list[str]:
    cluster_id = topic.topic_metadata(cluster, settings.topic)[0]
    commits = list(Manifest(Lake.open(settings.lake), cluster_id, settings.topic).commits())
    return [hour_key(h) for h in lake_hours(commits)]


def _done(server: DagsterServer, backfill_id: str) -> str | None:
    status = server.backfill_status(backfill_id)
    return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None


def _if_all(wanted: set[str], found: set[str]) -> set[str] | None:
    return found if wanted <= found else None


def _if_more(runs: list[dict], count: int) -> list[dict]:
    return runs if len(runs) >= count else []


def _traffic(settings: Settings) -> dict[str, int]:
    """Requests per hour in hourly_traffic, keyed like partitions."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT strftime(hour AT TIME ZONE 'UTC', '%Y-%m-%d-%H:00'), requests "
            f"FROM {TRAFFIC.name}").fetchall()
    return dict(rows)
