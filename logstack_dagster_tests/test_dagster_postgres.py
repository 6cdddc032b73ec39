"""Dagster's storage on PostgreSQL (deploy/dagster-postgres.yaml) under the demo's path.

The server is a throwaway cluster of the test's own: `initdb` in a temporary folder,
`pg_ctl` on a free port of 127.0.0.1, removed afterwards. PostgreSQL refuses to run as
root, so as root it runs as the `postgres` user (through `runuser`). With
LOGSTACK_TEST_PG_DSN set (`postgresql://user@host:port/db`), that server is used instead;
its database must be empty.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.demo import materialize_lake
from logstack_dagster.ingest import topic
from logstack_dagster.materialize import open_instance, run_ingest
from logstack_dagster.metrics.tables import TRAFFIC
from logstack_dagster_tests.conftest import count_lines
from logstack_dagster_tests.dagster_server import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
POSTGRES_YAML = REPO / "deploy" / "dagster-postgres.yaml"
NO_SERVER = "no PostgreSQL server programs; on Debian: apt-get install -y postgresql"


def _server_bin() -> Path | None:
    """The newest installed PostgreSQL's program folder, as Debian lays it out."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user() -> list[str]:
    """The prefix that runs a PostgreSQL program as a user allowed to run it."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` user to run the server as")
    if shutil.which("runuser") is None:
        pytest.skip("running as root and `runuser` is missing to run the server as postgres")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The address of an empty PostgreSQL database for Dagster's storage."""
    if os.environ.get("LOGSTACK_TEST_PG_DSN"):
        yield os.environ["LOGSTACK_TEST_PG_DSN"]
        return

    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.skip(NO_SERVER)
    prefix = _as_server_user()
    # Not under pytest's temporary folder: the postgres user may not enter it.
    folder = Path(tempfile.mkdtemp(prefix="logstack-pg-"))
    if prefix:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*prefix, *command], capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--no-locale")
        # No socket files beside other servers', no durability a throwaway needs.
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
            "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off",
            "start")
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                "postgres", "dagster")
            yield f"postgresql://postgres@127.0.0.1:{port}/dagster"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_demo_path_keeps_runs_and_materializations_in_postgres(
        postgres_url, settings, cluster, shared_data, monkeypatch):
    import psycopg2
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    log = shared_data / "first1000.log"
    settings.dagster_home.mkdir(parents=True)
    shutil.copy(POSTGRES_YAML, settings.dagster_home / "dagster.yaml")
    # The driver named, as deploy/dagster-postgres.yaml says.
    monkeypatch.setenv("DAGSTER_PG_URL",
                       postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    # open_instance points DAGSTER_HOME at the home; monkeypatch puts it back afterwards.
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    partitions = topic.ensure_topic(cluster, settings.topic, settings.partitions)
    topic.produce_file(cluster, settings.topic, log, partitions)

    instance = open_instance(settings.dagster_home)
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        ingested = run_ingest(instance, settings)
        metric_runs = materialize_lake(settings, instance)
    finally:
        instance.dispose()

    assert ingested["records"] == count_lines(log)
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp")
        runs = cursor.fetchall()
        cursor.execute(
            "SELECT DISTINCT partition FROM event_logs WHERE asset_key = %s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY 1",
            ['["hourly_traffic"]'])
        traffic_partitions = [p for p, in cursor.fetchall()]
    conn.close()
    assert runs == [("ingest_job", "SUCCESS")] + [("hourly_metrics_job", "SUCCESS")] * len(
        metric_runs)
    assert traffic_partitions == ["2019-01-22-00:00", "2019-01-22-04:00"]

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as metrics:
        requests, quarantined = metrics.execute(
            f"SELECT sum(requests), sum(quarantined) FROM {TRAFFIC.name}").fetchone()
    assert requests + quarantined == count_lines(log)
