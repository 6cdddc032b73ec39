"""A PostgreSQL server for the tests of Dagster's storage, with a database per test.

CI starts one server for the whole run (`.ci/postgres`, called by `.ci/run`) and names it
in LOGSTACK_TEST_PG_URL, as `postgresql+psycopg2://user@host:port/maintenance-db`. Without
that variable the session starts a server of its own with the same script and deletes it
afterwards. Either way each test gets a new database, so reruns never meet old runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / ".ci" / "postgres"
POSTGRES_YAML = REPO / "deploy" / "dagster-postgres.yaml"
URL_VARIABLE = "LOGSTACK_TEST_PG_URL"
# `.ci/postgres` exits with this when the machine cannot run a server at all.
CANNOT_RUN = 3


def libpq_url(url: str) -> str:
    """`url` without SQLAlchemy's driver name, as psycopg2 itself takes it."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _execute(server_url: str, statement: str) -> None:
    """Run one statement on the server's maintenance database, outside a transaction."""
    import psycopg2

    conn = psycopg2.connect(libpq_url(server_url), connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a PostgreSQL server's maintenance database, for making databases."""
    if os.environ.get(URL_VARIABLE):
        yield os.environ[URL_VARIABLE]
        return

    # Not under pytest's temporary folder: as root, the postgres user may not enter it.
    folder = tempfile.mkdtemp(prefix="logstack-pg-")
    started = subprocess.run([str(SERVER_SCRIPT), "start", folder], capture_output=True,
                             text=True, timeout=180, check=False)
    if started.returncode == CANNOT_RUN:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(started.stderr.strip())
    try:
        assert started.returncode == 0, f".ci/postgres start:\n{started.stderr}"
        yield started.stdout.strip()
    finally:
        subprocess.run([str(SERVER_SCRIPT), "stop", folder], capture_output=True,
                       timeout=120, check=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A `DAGSTER_PG_URL` of a new, empty database of this test's own."""
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"dagster_{uuid.uuid4().hex[:12]}"
    try:
        _execute(postgres_server, f'CREATE DATABASE "{name}"')
    except psycopg2.Error as error:
        pytest.fail(f"the PostgreSQL server of the tests ({URL_VARIABLE} or the test's own) "
                    f"refused a new database: {error}")

    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)

    # A connection a failed test left open must not keep the database alive.
    _execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_instance(postgres_url: str, settings, monkeypatch):
    """The Dagster instance of `settings`, made from deploy/dagster-postgres.yaml as a user
    would: the file copied into DAGSTER_HOME, the test's database in DAGSTER_PG_URL."""
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from logstack_dagster.materialize import open_instance

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(POSTGRES_YAML, settings.dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    # open_instance points DAGSTER_HOME at the home; monkeypatch puts it back afterwards.
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    instance = open_instance(settings.dagster_home)
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    yield instance
    instance.dispose()
