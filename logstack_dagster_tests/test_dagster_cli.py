"""Dagster's own command line, as a user runs it, against workspace.yaml and dagster.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from logstack_dagster.metrics.tables import METRICS

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")
ASSETS = {"raw_topic", "requests_lake", *(m.name for m in METRICS)}


def _workspace_module() -> str:
    """The module workspace.yaml loads (`dagster asset list` takes no workspace file)."""
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    return workspace["load_from"][0]["python_module"]["module_name"]


@pytest.fixture(scope="module")
def listings(tmp_path_factory) -> dict[str, str]:
    """The output of each listing command, run side by side with the repository's
    dagster.yaml in a fresh DAGSTER_HOME."""
    folder = tmp_path_factory.mktemp("dagster-cli")
    shutil.copy(REPO / "dagster.yaml", folder / "dagster.yaml")
    # Made once here: commands that each found an empty home would race to make its tables.
    DagsterInstance.from_config(str(folder)).dispose()
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(folder),
           "DAGSTER_HOME": str(folder), "LOGSTACK_HOME": str(folder / "home")}
    commands = {
        "sensors": ["sensor", "list", "-w", "workspace.yaml"],
        "schedules": ["schedule", "list", "-w", "workspace.yaml"],
        # A plain `asset list` leaves out the topic and the lake: Dagster counts assets
        # that only report materializations (external assets) as sources. The topic and
        # all that lies downstream of it is every asset.
        "assets": ["asset", "list", "-m", _workspace_module(), "--select", "raw_topic*"],
    }
    running = {name: subprocess.Popen([DAGSTER, *args], cwd=REPO, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name, args in commands.items()}
    outputs = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"dagster {' '.join(commands[name])}:\n{err[-3000:]}"
        outputs[name] = out
    return outputs


def test_sensor_list_names_the_ingest_automation_and_alert_sensors(listings):
    named = {line.split()[1] for line in listings["sensors"].splitlines()
             if line.startswith("Sensor: ")}
    assert named == {"raw_topic_sensor", "late_data_automation_sensor",
                     "run_failure_alert_sensor"}


def test_schedule_list_names_the_hourly_schedule(listings):
    assert "Schedule: hourly_metrics_schedule" in listings["schedules"]
    assert "Cron Schedule: 5 * * * *" in listings["schedules"]


def test_asset_list_names_the_topic_the_lake_and_every_metric(listings):
    assert set(listings["assets"].split()) == ASSETS


def test_dagster_yaml_loads_with_one_ingest_at_a_time_and_one_duckdb_writer(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        concurrency = instance.get_concurrency_config()
        assert not instance.telemetry_enabled

    limits = concurrency.run_queue_config.tag_concurrency_limits
    assert {"key": "logstack/ingest", "limit": 1} in limits
    assert concurrency.pool_config.default_pool_limit == 1


def test_the_postgres_variant_differs_only_in_its_storage():
    sqlite = yaml.safe_load((REPO / "dagster.yaml").read_text())
    postgres = yaml.safe_load((REPO / "deploy" / "dagster-postgres.yaml").read_text())

    assert postgres.pop("storage") == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert postgres == sqlite
