"""A small real lake of two hours and its metric tables, built as production builds them.

The lines go through the Bytewax dataflow (testing source, real `LakeSink`, real
enrichment) into Parquet; `build_hour` then fills every metric table for both hours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, run_main

from logstack_dagster.enrichment.geoip import GeoEnricher
from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.lake.layout import Lake
from logstack_dagster.metrics.tables import (
    COUNTRIES,
    METRICS,
    NOT_FOUND,
    OFFENDERS,
    STATUS_CODES,
    TOP_PATHS,
    TOP_REFERRERS,
    TRAFFIC,
    build_hour,
)
from logstack_dagster.settings import Settings
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink

# The metric tables a lake from before the user-agent enrichment can fill.
PARSER_ONLY_METRICS = (TRAFFIC, STATUS_CODES, COUNTRIES, OFFENDERS, TOP_PATHS, TOP_REFERRERS,
                       NOT_FOUND)

HOUR_A = datetime(2019, 1, 22, 10, tzinfo=UTC)
HOUR_B = datetime(2019, 1, 22, 11, tzinfo=UTC)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


def _line(vhost, ip, minute, hour, request, status, referrer, agent):
    return (f'{vhost}:443 {ip} - - [22/Jan/2019:{hour:02d}:{minute:02d}:00 +0000] '
            f'"{request}" {status} 512 "{referrer}" "{agent}"').encode()


# Two hours, two virtual hosts, people and bots, public addresses in three countries.
LINES = [
    _line("www.example.com", "8.8.8.8", 5, 10, "GET / HTTP/1.1", 200, "-", FIREFOX),
    _line("www.example.com", "8.8.8.8", 6, 10, "GET /about HTTP/1.1", 200,
          "https://www.google.com/", FIREFOX),
    _line("www.example.com", "81.2.69.160", 10, 10, "GET /missing HTTP/1.1", 404, "-",
          GOOGLEBOT),
    _line("api.example.com", "81.2.69.160", 20, 10, "GET /v1/items HTTP/1.1", 200, "-",
          "curl/8.4.0"),
    _line("api.example.com", "2.125.160.216", 30, 10, "GET /v1/items HTTP/1.1", 500, "-",
          FIREFOX),
    b"this is not an access log line",
    _line("www.example.com", "8.8.8.8", 1, 11, "GET / HTTP/1.1", 200,
          "https://www.google.com/", FIREFOX),
    _line("www.example.com", "2.125.160.216", 2, 11, "GET / HTTP/1.1", 304, "-", FIREFOX),
    _line("www.example.com", "81.2.69.160", 3, 11, "GET /robots.txt HTTP/1.1", 200, "-",
          BINGBOT),
    _line("www.example.com", "81.2.69.160", 4, 11, "GET /missing HTTP/1.1", 404, "-",
          GOOGLEBOT),
    _line("api.example.com", "8.8.8.8", 5, 11, "POST /v1/login HTTP/1.1", 403,
          "https://www.example.com/", FIREFOX),
    _line("api.example.com", "8.8.8.8", 6, 11, "POST /v1/login HTTP/1.1", 403,
          "https://www.example.com/", FIREFOX),
    b"",
]


def _messages(values):
    first_ms = int(HOUR_A.timestamp() * 1000)
    return [KafkaSourceMessage(key=None, value=v, topic="requests", partition=0, offset=i,
                               timestamp=(1, first_ms + i * 60_000))
            for i, v in enumerate(values)]


def build_lake(home: Path, enricher, metrics=METRICS) -> Settings:
    """Ingest `LINES` into `home`/lake through `enricher`; build both hours of `metrics`."""
    settings = Settings(home=home)
    sink = LakeSink(settings.lake, "cluster-a", "requests", 1, run_id="run-1", flush_rows=4)
    run_main(build_flow(TestingSource(_messages(LINES), batch_size=5), sink,
                        BatchProcessor("vhost_combined", enricher=enricher)))

    lake = Lake.open(settings.lake)
    conn = duckdb.connect(str(settings.duckdb_path))
    try:
        for hour in (HOUR_A, HOUR_B):
            for metric in metrics:
                build_hour(conn, lake, metric, hour)
    finally:
        conn.close()
    return settings


@pytest.fixture(scope="session")
def lake_settings(tmp_path_factory) -> Settings:
    """Settings whose home holds the enriched two-hour lake and its metric tables."""
    enricher = RowEnricher()
    try:
        return build_lake(tmp_path_factory.mktemp("report-lake"), enricher)
    finally:
        enricher.close()


@pytest.fixture(scope="session")
def plain_lake_settings(tmp_path_factory) -> Settings:
    """The same lines as a lake ingested before the user-agent enrichment: GeoIP columns,
    no bot columns."""
    geo = GeoEnricher(None, None)
    try:
        return build_lake(tmp_path_factory.mktemp("plain-lake"), geo, PARSER_ONLY_METRICS)
    finally:
        geo.close()


@pytest.fixture
def lake_sql(lake_settings):
    """A plain DuckDB session on the lake's Parquet files, for computing expectations
    independently of the report's code."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    glob = Lake.open(lake_settings.lake).glob("requests")
    conn.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet('{glob}')")
    quarantine = Lake.open(lake_settings.lake).glob("quarantine")
    conn.execute(f"""
        CREATE VIEW failures AS SELECT *, make_timestamptz(
            year::BIGINT, month::BIGINT, day::BIGINT, hour::BIGINT, 0, 0, 'UTC') AS filed
        FROM read_parquet('{quarantine}', hive_partitioning = true)
    """)
    yield conn
    conn.close()
