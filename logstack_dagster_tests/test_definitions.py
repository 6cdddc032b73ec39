"""The Dagster definitions load, validate, and hold the lineage the product promises."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DefaultScheduleStatus

from logstack_dagster.definitions import defs

REPO = Path(__file__).resolve().parent.parent
METRICS = [
    "hourly_traffic",
    "hourly_status_codes",
    "hourly_countries",
    "hourly_offenders",
    "hourly_top_paths",
    "hourly_top_referrers",
    "hourly_not_found_paths",
]


def test_lineage_runs_from_the_topic_through_the_lake_to_every_metric():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_topic", "requests_lake", *METRICS} <= keys

    assert AssetKey("raw_topic") in graph.get(AssetKey("requests_lake")).parent_keys
    for name in METRICS:
        ancestors = graph.get_ancestor_asset_keys(AssetKey(name))
        assert AssetKey("requests_lake") in ancestors
        assert AssetKey("raw_topic") in ancestors


def test_metric_assets_share_the_hourly_partitions_of_the_lake():
    graph = defs.resolve_asset_graph()
    lake = graph.get(AssetKey("requests_lake")).partitions_def
    assert lake is not None
    for name in METRICS:
        assert graph.get(AssetKey(name)).partitions_def == lake


def test_sensor_schedule_jobs_and_check_are_defined():
    assert defs.get_sensor_def("raw_topic_sensor").job_name == "ingest_job"
    assert defs.get_schedule_def("hourly_metrics_schedule").job_name == "hourly_metrics_job"
    compaction = defs.get_schedule_def("compact_lake_schedule")
    # A pass rewrites past hours: a deployment turns it on.
    assert compaction.job_name == "compact_lake_job"
    assert compaction.default_status == DefaultScheduleStatus.STOPPED
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert "parse_failure_share" in checks


def test_dagster_cli_validates_the_workspace(tmp_path):
    env_home = tmp_path / "dagster"
    env_home.mkdir()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={
            "PATH": str(Path(sys.executable).parent),
            "DAGSTER_HOME": str(env_home),
            "LOGSTACK_HOME": str(tmp_path / "home"),
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_the_executor_is_chosen_by_the_environment(tmp_path):
    import pytest
    from dagster import in_process_executor, multiprocess_executor

    from logstack_dagster.definitions import build_defs
    from logstack_dagster.settings import SettingsError, load_settings

    env = {"LOGSTACK_HOME": str(tmp_path)}
    chosen = {}
    for value in ("", "in_process", "multiprocess"):
        settings = load_settings({**env, "LOGSTACK_DAGSTER_EXECUTOR": value})
        job = build_defs(settings).resolve_job_def("hourly_metrics_job")
        chosen[value] = job.executor_def
    assert chosen == {"": in_process_executor, "in_process": in_process_executor,
                      "multiprocess": multiprocess_executor}
    with pytest.raises(SettingsError, match="LOGSTACK_DAGSTER_EXECUTOR must be one of "
                                            "in_process, multiprocess, not 'threads'"):
        load_settings({**env, "LOGSTACK_DAGSTER_EXECUTOR": "threads"})
