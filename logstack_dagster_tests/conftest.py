"""Fixtures shared by the tests: the real logs of ../shared and a real embedded broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from logstack_dagster.ingest import broker
from logstack_dagster.ingest.topic import Cluster
from logstack_dagster.settings import Settings

# Defined once here, so that one PostgreSQL server serves the whole session.
from logstack_dagster_tests.postgres import (  # noqa: F401
    postgres_instance,
    postgres_server,
    postgres_url,
)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real access logs; tests that need it skip when it is absent."""
    folder = SHARED / "data"
    if not folder.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return folder


@pytest.fixture(scope="session")
def broker_home(tmp_path_factory) -> Path:
    """A LOGSTACK_HOME whose embedded broker runs for the whole session."""
    home = tmp_path_factory.mktemp("broker-home")
    broker.start(home / "broker")
    yield home
    broker.stop(home / "broker")


@pytest.fixture(scope="session")
def broker_address(broker_home: Path) -> str:
    return broker.read_state(broker_home / "broker").address


@pytest.fixture
def settings(broker_address: str, tmp_path: Path) -> Settings:
    """Settings on the session's broker, with a home and a topic of this test's own."""
    return Settings(
        home=tmp_path / "home",
        brokers=broker_address,
        topic=f"t{uuid.uuid4().hex[:10]}",
        partitions=2,
    )


@pytest.fixture
def cluster(settings: Settings) -> Cluster:
    return Cluster(settings.brokers, {})


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a logstack process use `settings`."""
    import os

    return {
        **os.environ,
        "LOGSTACK_HOME": str(settings.home),
        "KAFKA_BROKERS": settings.brokers,
        "KAFKA_TOPIC": settings.topic,
        "LOGSTACK_LAKE": settings.lake,
        "KAFKA_PARTITIONS": str(settings.partitions),
    }


def count_lines(path: Path) -> int:
    """Lines as logstack reads them: split at LF, a last line without LF counts too."""
    data = path.read_bytes()
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
