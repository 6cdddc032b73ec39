"""The SASL password reaches the Kafka clients and nothing else.

The embedded broker speaks no SASL, so every command here fails to talk to it: the
error paths are the ones most likely to print a setting, and they are checked here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from dagster import DagsterInstance

from logstack_dagster.definitions import build_defs
from logstack_dagster.ingest.topic import Cluster, resolve_cluster
from logstack_dagster.settings import load_settings
from logstack_dagster_tests.conftest import settings_env

pytestmark = pytest.mark.integration

SECRET = "Tr0ub4dor-and-3-correct-horse"
SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "PLAIN",
    "KAFKA_SASL_USERNAME": "logstack",
    "KAFKA_SASL_PASSWORD": SECRET,
}


def _logstack(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logstack_dagster.cli", *args],
                          env={**settings_env(settings), **SASL}, capture_output=True,
                          text=True, timeout=120)


def test_settings_and_cluster_never_show_the_password(settings):
    loaded = load_settings({**settings_env(settings), **SASL})
    cluster = resolve_cluster(loaded)

    assert cluster.librdkafka_config()["sasl.password"] == SECRET
    assert cluster.kafka_python_config()["sasl_plain_password"] == SECRET
    for shown in (repr(loaded), str(loaded), repr(cluster), str(cluster),
                  repr(Cluster(settings.brokers, {"sasl.password": SECRET}))):
        assert SECRET not in shown
    assert "sasl.password" in repr(cluster)


def test_failing_commands_name_the_broker_but_not_the_password(settings, tmp_path):
    log = tmp_path / "one.log"
    log.write_text('192.0.2.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.0" 200 5\n')

    produced = _logstack(settings, "produce", str(log))
    flowed = _logstack(settings, "flow", "--broker-timeout", "2")

    for result in (produced, flowed):
        assert result.returncode != 0
        assert SECRET not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert settings.brokers in result.stderr
    assert "sasl.password" in produced.stderr


def test_a_failed_ingest_run_keeps_the_password_out_of_dagster(settings, monkeypatch, tmp_path):
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    instance = DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster"))
    job = build_defs(settings).resolve_job_def("ingest_job")

    result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert not result.success
    records = instance.all_logs(result.run_id)
    text = "\n".join(str(record) for record in records)
    assert settings.brokers in text
    assert SECRET not in text
    assert SECRET not in str(instance.get_run_by_id(result.run_id))
