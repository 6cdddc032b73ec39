"""Two questions `logstack query` must answer on the real sample, through the real pipeline:
the top 10 countries of human requests, and the top bots by requests.

first1000.log goes into a topic of the session's broker, through `ingest_job` (Bytewax)
and the hourly metrics (Dagster, DuckDB); then the questions are asked as a user asks
them, of the metric tables and of the lake, and checked against the raw file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from logstack_dagster.ingest import topic
from logstack_dagster_tests.conftest import settings_env

pytestmark = pytest.mark.integration

HUMAN_COUNTRIES = """
    SELECT country, sum(requests) AS requests FROM hourly_human_countries
    GROUP BY country ORDER BY requests DESC, country LIMIT 10
"""
HUMAN_COUNTRIES_FROM_LAKE = """
    SELECT coalesce(country, 'unknown') AS country, count(*) AS requests FROM requests
    WHERE ua_class = 'human' GROUP BY 1 ORDER BY requests DESC, country LIMIT 10
"""
TOP_BOTS = """
    SELECT bot_name, any_value(bot_category) AS category, sum(requests) AS requests
    FROM hourly_top_bots GROUP BY bot_name ORDER BY requests DESC, bot_name LIMIT 10
"""


def _query(settings, sql: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "logstack_dagster.cli", "query", "--json",
                             sql], env=settings_env(settings), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def sample(tmp_path_factory, broker_address, shared_data):
    """Settings of a home whose lake and metrics hold first1000.log, and the raw lines."""
    import uuid

    from logstack_dagster.demo import materialize_lake
    from logstack_dagster.materialize import open_instance, run_ingest
    from logstack_dagster.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("sample-questions"),
                        brokers=broker_address, topic=f"q{uuid.uuid4().hex[:10]}")
    path = shared_data / "first1000.log"
    cluster = topic.Cluster(broker_address, {})
    partitions = topic.ensure_topic(cluster, settings.topic, 2)
    topic.produce_file(cluster, settings.topic, path, partitions)
    instance = open_instance(settings.dagster_home)
    run_ingest(instance, settings)
    materialize_lake(settings, instance)
    return settings, path.read_bytes().splitlines()


def test_top_10_countries_of_human_requests(sample):
    settings, _lines = sample

    from_metrics = _query(settings, HUMAN_COUNTRIES)
    from_lake = _query(settings, HUMAN_COUNTRIES_FROM_LAKE)

    assert from_metrics == from_lake
    # The sample is an Iranian shop's log: most people come from Iran. Its thousand lines
    # hold fewer than ten countries of people, so all of them are in the answer.
    assert from_metrics[0]["country"] == "IR"
    assert from_metrics == sorted(from_metrics, key=lambda row: -row["requests"])
    humans = _query(settings, "SELECT count(*) AS n FROM requests WHERE ua_class = 'human'")
    everyone = _query(settings, "SELECT count(*) AS n FROM requests")
    assert sum(row["requests"] for row in from_metrics) == humans[0]["n"] < everyone[0]["n"]


def test_top_bots_by_requests(sample):
    settings, lines = sample

    bots = _query(settings, TOP_BOTS)

    def agent_count(pattern: str) -> int:
        found = re.compile(pattern.encode(), re.IGNORECASE)
        return sum(1 for line in lines if found.search(line.rsplit(b'" "', 2)[-2]))

    by_name = {row["bot_name"]: row for row in bots}
    assert [row["bot_name"] for row in bots[:2]] == ["Googlebot", "Bingbot"]
    assert by_name["Googlebot"]["requests"] == agent_count(r"Googlebot")
    assert by_name["Googlebot"]["category"] == "search_engine"
    assert by_name["Bingbot"]["requests"] == agent_count(r"bingbot|msnbot|BingPreview")
    assert by_name["AhrefsBot"] == {"bot_name": "AhrefsBot", "category": "seo_tool",
                                    "requests": agent_count(r"AhrefsBot")}
    lake_bots = _query(settings, "SELECT count(*) AS n FROM requests WHERE is_bot")
    assert sum(row["requests"] for row in bots) <= lake_bots[0]["n"]
