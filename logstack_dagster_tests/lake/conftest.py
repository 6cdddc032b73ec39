"""An S3-compatible server for the lake tests: moto's server mode, on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest

# Throwaway credentials of the test server; the tests check that they never leak.
ACCESS_KEY = "logstack-test-access"
SECRET_KEY = "logstack-test-secret-7f3e9d"


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """`http://127.0.0.1:PORT` of a moto server that runs for the whole session."""
    pytest.importorskip("moto", reason="moto[server] (the test extra) is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto server did not start on {endpoint}") from None
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch) -> dict[str, str]:
    """The AWS variables of the test server, set in this process (children inherit them).

    The metadata service is switched off so that the AWS SDK never looks beyond loopback.
    """
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return values


@pytest.fixture
def s3_bucket(s3_endpoint: str, s3_env) -> str:
    """A fresh, empty bucket of this test's own."""
    import pyarrow.fs as pafs

    name = f"lake-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint.split("://")[1], scheme="http",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(name)
    return name


@pytest.fixture
def s3_lake_uri(s3_endpoint: str, s3_bucket: str) -> str:
    """The lake URI as `Settings.lake` builds it from LOGSTACK_LAKE and the S3 settings."""
    host = s3_endpoint.split("://")[1]
    return f"s3://{s3_bucket}/lake?endpoint_override={host}&scheme=http&region=us-east-1"


@pytest.fixture
def s3_settings(settings, s3_endpoint: str, s3_bucket: str):
    """The test's settings with the lake in its own bucket, named as a user would."""
    return replace(settings, lake_uri=f"s3://{s3_bucket}/lake", s3_endpoint=s3_endpoint,
                   s3_region="us-east-1")


@pytest.fixture(params=["sqlite", "postgres"])
def dagster_instance(request, settings, monkeypatch):
    """The Dagster instance of the test's home, with its storage in either place a user
    keeps it: SQLite files in DAGSTER_HOME, as `logstack demo` makes them, or PostgreSQL
    through deploy/dagster-postgres.yaml."""
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_instance")
        return

    from logstack_dagster.materialize import open_instance

    # open_instance points DAGSTER_HOME at the home; monkeypatch puts it back afterwards.
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    instance = open_instance(settings.dagster_home)
    yield instance
    instance.dispose()
