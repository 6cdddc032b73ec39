"""The hourly metric tables: their columns and the SQL that fills one hour of each.

Every table has an `hour` column (the UTC start of the hour, TIMESTAMPTZ). Building an
hour deletes that hour's rows and inserts them anew in one transaction, so building it
twice leaves the same table, and no other hour is touched.

In each query `hour_rows` is that hour's parsed rows and `hour_quarantine` its
quarantined lines (views set up by `build_hour`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from logstack_dagster.enrichment.networks import datacenter_sql
from logstack_dagster.lake.duck import hour_source, use_lake
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake
from logstack_dagster.lake.schema import rows_schema
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA

TOP_N = 100


@dataclass(frozen=True)
class MetricTable:
    """One hourly metric table: its name, its grain, its columns and how to fill an hour."""

    name: str
    grain: str
    columns: str
    select: str


TRAFFIC = MetricTable(
    name="hourly_traffic",
    grain="one row per hour",
    columns="requests BIGINT, unique_ips BIGINT, unique_visitors BIGINT, bytes_sent BIGINT, "
            "quarantined BIGINT",
    select="""
        SELECT
            (SELECT count(*) FROM hour_rows),
            (SELECT count(DISTINCT ip) FROM hour_rows),
            (SELECT count(DISTINCT (coalesce(ip, client), coalesce(user_agent, '')))
               FROM hour_rows),
            (SELECT coalesce(sum(bytes_sent), 0) FROM hour_rows),
            (SELECT count(*) FROM hour_quarantine)
    """,
)

STATUS_CODES = MetricTable(
    name="hourly_status_codes",
    grain="one row per hour and HTTP status code",
    columns="status_code INTEGER, requests BIGINT",
    select="SELECT status_code, count(*) FROM hour_rows GROUP BY status_code",
)

COUNTRIES = MetricTable(
    name="hourly_countries",
    grain="one row per hour and client country (ISO code, 'unknown' when not located)",
    columns="country VARCHAR, country_name VARCHAR, requests BIGINT, unique_ips BIGINT",
    select="""
        SELECT coalesce(country, 'unknown'), any_value(country_name), count(*),
               count(DISTINCT ip)
        FROM hour_rows GROUP BY coalesce(country, 'unknown')
    """,
)

OFFENDERS = MetricTable(
    name="hourly_offenders",
    grain="one row per hour, non-200 status code and client",
    columns="status_code INTEGER, client VARCHAR, ip VARCHAR, requests BIGINT",
    select="""
        SELECT status_code, client, any_value(ip), count(*)
        FROM hour_rows WHERE status_code IS DISTINCT FROM 200
        GROUP BY status_code, client
    """,
)

TOP_PATHS = MetricTable(
    name="hourly_top_paths",
    grain=f"the {TOP_N} most requested paths of each hour",
    columns="path VARCHAR, requests BIGINT",
    select=f"""
        SELECT path, count(*) AS n FROM hour_rows WHERE path IS NOT NULL
        GROUP BY path ORDER BY n DESC, path LIMIT {TOP_N}
    """,
)

TOP_REFERRERS = MetricTable(
    name="hourly_top_referrers",
    grain=f"the {TOP_N} most frequent referrers of each hour",
    columns="referrer VARCHAR, requests BIGINT",
    select=f"""
        SELECT referrer, count(*) AS n FROM hour_rows WHERE referrer IS NOT NULL
        GROUP BY referrer ORDER BY n DESC, referrer LIMIT {TOP_N}
    """,
)

NOT_FOUND = MetricTable(
    name="hourly_not_found_paths",
    grain=f"the {TOP_N} paths answered 404 most often in each hour",
    columns="path VARCHAR, requests BIGINT",
    select=f"""
        SELECT coalesce(path, request), count(*) AS n FROM hour_rows
        WHERE status_code = 404 GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_N}
    """,
)

# Who the requests come from. A visitor is an address and user agent within the hour, as
# in hourly_traffic; `ua_class` says human, bot, empty or unknown (see enrichment.useragent).
AUDIENCE = MetricTable(
    name="hourly_audience",
    grain="one row per hour and user-agent class (human, bot, empty, unknown)",
    columns="ua_class VARCHAR, is_bot BOOLEAN, requests BIGINT, unique_visitors BIGINT, "
            "page_requests BIGINT",
    select="""
        SELECT ua_class, is_bot, count(*),
               count(DISTINCT (coalesce(ip, client), coalesce(user_agent, ''))),
               count(*) FILTER (WHERE NOT is_static)
        FROM hour_rows GROUP BY ua_class, is_bot
    """,
)

HUMAN_COUNTRIES = MetricTable(
    name="hourly_human_countries",
    grain="one row per hour and client country, for browsers of people only (ua_class "
          "'human'; bots, empty and unknown agents left out)",
    columns="country VARCHAR, country_name VARCHAR, requests BIGINT, unique_visitors BIGINT",
    select="""
        SELECT coalesce(country, 'unknown'), any_value(country_name), count(*),
               count(DISTINCT (coalesce(ip, client), coalesce(user_agent, '')))
        FROM hour_rows WHERE ua_class = 'human'
        GROUP BY coalesce(country, 'unknown')
    """,
)

TOP_BOTS = MetricTable(
    name="hourly_top_bots",
    grain=f"the {TOP_N} busiest bots of each hour, by name and category (search_engine, "
          "seo_tool, ai_crawler, monitor, library, unknown_bot)",
    columns="bot_name VARCHAR, bot_category VARCHAR, requests BIGINT, unique_ips BIGINT",
    select=f"""
        SELECT bot_name, bot_category, count(*) AS n, count(DISTINCT ip)
        FROM hour_rows WHERE is_bot
        GROUP BY bot_name, bot_category ORDER BY n DESC, bot_name LIMIT {TOP_N}
    """,
)

# Whose networks the requests come from, and whether those are data centres (see
# enrichment.networks). Needs ASN data: without a GeoLite2-ASN database every row has a
# null `asn` and a null `datacenter`, and the share of data-centre traffic is unknown.
NETWORKS = MetricTable(
    name="hourly_networks",
    grain="one row per hour and autonomous system (null asn: no ASN data for the client), "
          "`datacenter` true for clouds and hosting providers, null when unknown",
    columns="asn BIGINT, as_org VARCHAR, datacenter BOOLEAN, requests BIGINT, "
            "unique_ips BIGINT, bot_requests BIGINT",
    select=f"""
        SELECT asn, any_value(as_org), any_value({datacenter_sql()}), count(*),
               count(DISTINCT ip), count(*) FILTER (WHERE is_bot)
        FROM hour_rows GROUP BY asn
    """,
)

DATACENTER_SHARE_SQL = f"""
    SELECT hour,
           sum(requests) FILTER (WHERE datacenter) AS datacenter_requests,
           sum(requests) FILTER (WHERE datacenter IS NOT NULL) AS requests_with_asn,
           sum(requests) AS requests,
           round(sum(requests) FILTER (WHERE datacenter)
                 / sum(requests) FILTER (WHERE datacenter IS NOT NULL), 4) AS datacenter_share
    FROM {NETWORKS.name} GROUP BY hour
"""
"""Per hour: the share of requests with ASN data that came from data-centre networks."""

METRICS = (TRAFFIC, STATUS_CODES, COUNTRIES, OFFENDERS, TOP_PATHS, TOP_REFERRERS, NOT_FOUND,
           AUDIENCE, HUMAN_COUNTRIES, TOP_BOTS, NETWORKS)


def ensure_table(conn: duckdb.DuckDBPyConnection, metric: MetricTable) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {metric.name} (hour TIMESTAMPTZ NOT NULL, {metric.columns})"
    )


def build_hour(conn: duckdb.DuckDBPyConnection, lake: Lake, metric: MetricTable,
               hour: datetime) -> int:
    """Replace `metric`'s rows for the UTC hour starting at `hour`; return the rows written."""
    ensure_table(conn, metric)
    use_lake(conn, lake)
    _hour_view(conn, "hour_rows", hour_source(lake, ROWS, hour), rows_schema())
    _hour_view(conn, "hour_quarantine", hour_source(lake, QUARANTINE, hour), QUARANTINE_SCHEMA)

    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM {metric.name} WHERE hour = $1", [hour])
        conn.execute(f"INSERT INTO {metric.name} SELECT $1::TIMESTAMPTZ, * FROM "
                     f"({metric.select})", [hour])
        written = conn.execute(f"SELECT count(*) FROM {metric.name} WHERE hour = $1",
                               [hour]).fetchone()[0]
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return written


def _hour_view(conn: duckdb.DuckDBPyConnection, name: str, source: str | None,
               schema) -> None:
    if source is not None:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {source}")
    else:
        conn.register(f"_{name}_empty", schema.empty_table())
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM _{name}_empty")
