"""The composite enricher on parsed rows, in the dataflow, and in the metrics it feeds."""

from datetime import UTC, datetime

import duckdb
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.testing import TestingSource, run_main

from logstack_dagster.enrichment.geoip import ENRICHED_SCHEMA
from logstack_dagster.enrichment.pipeline import ENRICHMENT_SCHEMA, RowEnricher
from logstack_dagster.enrichment.referrer import REFERRER_SCHEMA
from logstack_dagster.enrichment.useragent import USER_AGENT_SCHEMA
from logstack_dagster.lake.layout import Lake
from logstack_dagster.lake.schema import rows_schema
from logstack_dagster.metrics.tables import AUDIENCE, HUMAN_COUNTRIES, METRICS, TOP_BOTS, build_hour
from logstack_dagster.parser import parse_lines
from logstack_dagster.settings import SettingsError, load_settings
from logstack_dagster.streaming.dataflow import BatchProcessor, build_flow
from logstack_dagster.streaming.sink import LakeSink

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CLAUDEBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
    "+claudebot@anthropic.com)"
)


def line(ip: str, path: str, referrer: str, agent: str, minute: int = 10) -> bytes:
    return (
        f'{ip} - - [22/Jan/2019:03:{minute:02d}:00 +0000] "GET {path} HTTP/1.1" 200 512 '
        f'"{referrer}" "{agent}"'
    ).encode()


# One hour of a small site: two people (one in Germany, one in Japan), two crawlers, a
# script and a client that sent no agent. 8.8.8.8 is in the US for the bundled database.
LINES = [
    line("79.192.10.20", "/pricing?plan=team", "https://www.google.de/", CHROME_WINDOWS),
    line("79.192.10.20", "/static/app.css", "https://www.example.com/pricing", CHROME_WINDOWS),
    line("79.192.10.20", "/docs", "https://www.example.com/pricing", CHROME_WINDOWS, 20),
    line("126.10.20.30", "/", "https://t.co/Ab12", SAFARI_IPHONE),
    line("8.8.8.8", "/", "-", GOOGLEBOT),
    line("8.8.8.8", "/docs", "-", GOOGLEBOT, 11),
    line("8.8.8.8", "/robots.txt", "-", CLAUDEBOT),
    line("8.8.8.8", "/feed", "-", "curl/8.7.1"),
    line("8.8.8.8", "/", "-", "-"),
]
HOUR = datetime(2019, 1, 22, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def enricher() -> RowEnricher:
    with RowEnricher(site_hosts=("example.com",)) as row_enricher:
        yield row_enricher


def test_schema_is_geoip_then_user_agent_then_referrer() -> None:
    assert ENRICHMENT_SCHEMA.names == [
        *ENRICHED_SCHEMA.names, *USER_AGENT_SCHEMA.names, *REFERRER_SCHEMA.names]
    assert len(set(ENRICHMENT_SCHEMA.names)) == len(ENRICHMENT_SCHEMA)
    assert set(ENRICHMENT_SCHEMA.names) <= set(rows_schema().names)


def test_enrich_adds_every_column_to_parsed_rows(enricher: RowEnricher) -> None:
    parsed = parse_lines(LINES, "combined").rows

    out = enricher.enrich(parsed)

    assert out.schema.names == [*parsed.schema.names, *ENRICHMENT_SCHEMA.names]
    assert out.select(ENRICHMENT_SCHEMA.names).schema == ENRICHMENT_SCHEMA
    rows = out.to_pylist()
    assert [r["ua_class"] for r in rows] == ["human"] * 4 + ["bot"] * 4 + ["empty"]
    assert [r["bot_category"] for r in rows[4:8]] == [
        "search_engine", "search_engine", "ai_crawler", "library"]
    assert [r["referrer_kind"] for r in rows[:4]] == [
        "search_engine", "internal", "internal", "social"]
    assert rows[0]["search_engine"] == "Google"
    assert [r["is_static"] for r in rows[:3]] == [False, True, False]
    assert [r["country"] for r in rows[:5]] == ["DE", "DE", "DE", "JP", "US"]


def test_site_hosts_come_from_the_environment() -> None:
    settings = load_settings({"LOGSTACK_SITE_HOSTS": " Example.com, shop.example.net,,"})

    assert settings.site_hosts == ("example.com", "shop.example.net")
    assert load_settings({}).site_hosts == ()
    with pytest.raises(SettingsError, match="LOGSTACK_SITE_HOSTS"):
        load_settings({"LOGSTACK_SITE_HOSTS": "https://example.com/"})


def _messages(values: list[bytes]) -> list[KafkaSourceMessage]:
    return [
        KafkaSourceMessage(key=None, value=v, topic="requests", partition=0, offset=i,
                           timestamp=(1, 1548126000000 + i))
        for i, v in enumerate(values)
    ]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """A lake written by the dataflow with the real enricher."""
    root = tmp_path_factory.mktemp("lake")
    sink = LakeSink(str(root), "cluster-a", "requests", 1, run_id="run-1", flush_rows=4)
    with RowEnricher(site_hosts=("example.com",)) as enricher:
        processor = BatchProcessor("combined", enricher=enricher)
        run_main(build_flow(TestingSource(_messages(LINES), batch_size=4), sink, processor))
    return Lake.open(str(root))


def test_dataflow_writes_the_enrichment_into_parquet(lake: Lake) -> None:
    conn = duckdb.connect()
    relation = conn.sql(f"SELECT * FROM read_parquet('{lake.glob('requests')}')")

    assert set(ENRICHMENT_SCHEMA.names) <= set(relation.columns)
    found = conn.execute(
        f"SELECT ua_class, bot_name, bot_category, referrer_kind, is_static, country "
        f"FROM read_parquet('{lake.glob('requests')}') ORDER BY \"offset\""
    ).fetchall()
    assert len(found) == len(LINES)
    assert found[0] == ("human", None, None, "search_engine", False, "DE")
    assert found[6] == ("bot", "ClaudeBot", "ai_crawler", "none", False, "US")
    assert found[8][0] == "empty"


def test_new_metric_tables_split_people_from_bots(lake: Lake) -> None:
    assert {AUDIENCE, HUMAN_COUNTRIES, TOP_BOTS} <= set(METRICS)
    conn = duckdb.connect()
    for metric in (AUDIENCE, HUMAN_COUNTRIES, TOP_BOTS):
        assert build_hour(conn, lake, metric, HOUR) > 0

    audience = conn.execute(
        "SELECT ua_class, is_bot, requests, unique_visitors, page_requests "
        "FROM hourly_audience ORDER BY ua_class").fetchall()
    assert audience == [("bot", True, 4, 3, 4), ("empty", False, 1, 1, 1),
                        ("human", False, 4, 2, 3)]

    countries = conn.execute(
        "SELECT country, requests, unique_visitors FROM hourly_human_countries "
        "ORDER BY country").fetchall()
    assert countries == [("DE", 3, 1), ("JP", 1, 1)]

    bots = conn.execute(
        "SELECT bot_name, bot_category, requests FROM hourly_top_bots "
        "ORDER BY requests DESC, bot_name").fetchall()
    assert bots == [("Googlebot", "search_engine", 2), ("ClaudeBot", "ai_crawler", 1),
                    ("curl", "library", 1)]
