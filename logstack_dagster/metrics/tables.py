"""The hourly metric tables: their columns and the SQL that fills them, hour by hour.

Every table has an `hour` column (the UTC start of the hour, TIMESTAMPTZ). Building a
set of hours deletes those hours' rows and inserts them anew in one transaction, so
building them twice leaves the same table, and no other hour is touched.

Each table's SQL comes in two shapes made from one definition. `select` fills one hour
from the views `hour_rows` and `hour_quarantine` (that hour's parsed rows and
quarantined lines); the report runs it. `select_hours` fills many hours in one statement
from `range_rows` and `range_quarantine`, the same files with each row's `hour` (that of
the lake folder it was read from) beside it, and gives the same rows as `select` hour by
hour. Builds use it: on a lake of many sparse hours, one statement per table instead of
one per hour is three to four times faster (bench/results/history.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from logstack_dagster.enrichment.networks import datacenter_sql
from logstack_dagster.lake.duck import hours_source, use_lake
from logstack_dagster.lake.layout import QUARANTINE, ROWS, Lake
from logstack_dagster.lake.schema import rows_schema
from logstack_dagster.streaming.batch import QUARANTINE_SCHEMA

TOP_N = 100
HOURS_PER_STATEMENT = 12


@dataclass(frozen=True)
class MetricTable:
    """One hourly metric table: its name, its grain, its columns and how to fill hours.

    Most tables are one aggregate over the rows: `values` grouped by `keys`, of the rows
    that pass `where`; with `top`, only the `TOP_N` first groups in that order. TRAFFIC,
    which needs a row for every hour built, even an empty one, gives both shapes itself.
    """

    name: str
    grain: str
    columns: str
    values: str = ""
    keys: str = ""
    where: str = ""
    top: str = ""
    one_hour: str = ""
    many_hours: str = ""

    @property
    def select(self) -> str:
        """The rows of one hour, from `hour_rows` and `hour_quarantine`, without `hour`."""
        if self.one_hour:
            return self.one_hour
        sql = f"SELECT {self.values} FROM hour_rows {self._where()}"
        sql += f" GROUP BY {self.keys}" if self.keys else ""
        return sql + (f" ORDER BY {self.top} LIMIT {TOP_N}" if self.top else "")

    @property
    def select_hours(self) -> str:
        """The rows of every hour in `range_hours`, from `range_rows` and `range_quarantine`,
        `hour` first."""
        if self.many_hours:
            return self.many_hours
        sql = f"SELECT hour, {self.values} FROM range_rows {self._where()} GROUP BY hour"
        sql += f", {self.keys}" if self.keys else ""
        if self.top:
            sql += f" QUALIFY row_number() OVER (PARTITION BY hour ORDER BY {self.top}) <= {TOP_N}"
        return sql

    def _where(self) -> str:
        return f"WHERE {self.where}" if self.where else ""


VISITORS = "count(DISTINCT (coalesce(ip, client), coalesce(user_agent, '')))"
"""Unique visitors: an address (the client's name when it has none) and a user agent."""

TRAFFIC = MetricTable(
    name="hourly_traffic",
    grain="one row per hour",
    columns="requests BIGINT, unique_ips BIGINT, unique_visitors BIGINT, bytes_sent BIGINT, "
            "quarantined BIGINT",
    one_hour=f"""
        SELECT
            (SELECT count(*) FROM hour_rows),
            (SELECT count(DISTINCT ip) FROM hour_rows),
            (SELECT {VISITORS} FROM hour_rows),
            (SELECT coalesce(sum(bytes_sent), 0) FROM hour_rows),
            (SELECT count(*) FROM hour_quarantine)
    """,
    many_hours=f"""
        SELECT h.hour, coalesce(r.requests, 0), coalesce(r.unique_ips, 0),
               coalesce(r.unique_visitors, 0), coalesce(r.bytes_sent, 0),
               coalesce(q.quarantined, 0)
        FROM range_hours AS h
        LEFT JOIN (SELECT hour, count(*) AS requests, count(DISTINCT ip) AS unique_ips,
                          {VISITORS} AS unique_visitors, sum(bytes_sent) AS bytes_sent
                   FROM range_rows GROUP BY hour) AS r USING (hour)
        LEFT JOIN (SELECT hour, count(*) AS quarantined FROM range_quarantine GROUP BY hour)
            AS q USING (hour)
    """,
)

STATUS_CODES = MetricTable(
    name="hourly_status_codes",
    grain="one row per hour and HTTP status code",
    columns="status_code INTEGER, requests BIGINT",
    values="status_code, count(*)",
    keys="status_code",
)

COUNTRIES = MetricTable(
    name="hourly_countries",
    grain="one row per hour and client country (ISO code, 'unknown' when not located)",
    columns="country VARCHAR, country_name VARCHAR, requests BIGINT, unique_ips BIGINT",
    values="coalesce(country, 'unknown'), any_value(country_name), count(*), count(DISTINCT ip)",
    keys="coalesce(country, 'unknown')",
)

OFFENDERS = MetricTable(
    name="hourly_offenders",
    grain="one row per hour, non-200 status code and client",
    columns="status_code INTEGER, client VARCHAR, ip VARCHAR, requests BIGINT",
    values="status_code, client, any_value(ip), count(*)",
    where="status_code IS DISTINCT FROM 200",
    keys="status_code, client",
)

TOP_PATHS = MetricTable(
    name="hourly_top_paths",
    grain=f"the {TOP_N} most requested paths of each hour",
    columns="path VARCHAR, requests BIGINT",
    values="path, count(*) AS n",
    where="path IS NOT NULL",
    keys="path",
    top="n DESC, path",
)

TOP_REFERRERS = MetricTable(
    name="hourly_top_referrers",
    grain=f"the {TOP_N} most frequent referrers of each hour",
    columns="referrer VARCHAR, requests BIGINT",
    values="referrer, count(*) AS n",
    where="referrer IS NOT NULL",
    keys="referrer",
    top="n DESC, referrer",
)

NOT_FOUND = MetricTable(
    name="hourly_not_found_paths",
    grain=f"the {TOP_N} paths answered 404 most often in each hour",
    columns="path VARCHAR, requests BIGINT",
    values="coalesce(path, request), count(*) AS n",
    where="status_code = 404",
    keys="coalesce(path, request)",
    top="n DESC, coalesce(path, request)",
)

# Who the requests come from. A visitor is an address and user agent within the hour, as
# in hourly_traffic; `ua_class` says human, bot, empty or unknown (see enrichment.useragent).
AUDIENCE = MetricTable(
    name="hourly_audience",
    grain="one row per hour and user-agent class (human, bot, empty, unknown)",
    columns="ua_class VARCHAR, is_bot BOOLEAN, requests BIGINT, unique_visitors BIGINT, "
            "page_requests BIGINT",
    values=f"ua_class, is_bot, count(*), {VISITORS}, count(*) FILTER (WHERE NOT is_static)",
    keys="ua_class, is_bot",
)

HUMAN_COUNTRIES = MetricTable(
    name="hourly_human_countries",
    grain="one row per hour and client country, for browsers of people only (ua_class "
          "'human'; bots, empty and unknown agents left out)",
    columns="country VARCHAR, country_name VARCHAR, requests BIGINT, unique_visitors BIGINT",
    values=f"coalesce(country, 'unknown'), any_value(country_name), count(*), {VISITORS}",
    where="ua_class = 'human'",
    keys="coalesce(country, 'unknown')",
)

# Ties at the TOP_N boundary between two categories of one bot name fall either way.
TOP_BOTS = MetricTable(
    name="hourly_top_bots",
    grain=f"the {TOP_N} busiest bots of each hour, by name and category (search_engine, "
          "seo_tool, ai_crawler, monitor, library, unknown_bot)",
    columns="bot_name VARCHAR, bot_category VARCHAR, requests BIGINT, unique_ips BIGINT",
    values="bot_name, bot_category, count(*) AS n, count(DISTINCT ip)",
    where="is_bot",
    keys="bot_name, bot_category",
    top="n DESC, bot_name",
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
    # Classed once per network, not per row: an ASN has one organisation name.
    values=f"asn, any_value(as_org), {datacenter_sql('asn', 'any_value(as_org)')}, count(*), "
           "count(DISTINCT ip), count(*) FILTER (WHERE is_bot)",
    keys="asn",
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
    return build_hours(conn, lake, metric, [hour])


def build_hours(conn: duckdb.DuckDBPyConnection, lake: Lake, metric: MetricTable,
                hours: list[datetime]) -> int:
    """Replace `metric`'s rows for each UTC hour starting at one of `hours`, in one
    transaction; return the rows written. The same rows as `build_hour` hour by hour."""
    hours = sorted(set(hours))
    ensure_table(conn, metric)
    use_lake(conn, lake)
    # The tables have no row order to keep; not keeping one lets the aggregates finish
    # without putting their results back in input order (a few percent of a 10M-row day).
    conn.execute("SET preserve_insertion_order = false")

    written = 0
    conn.execute("BEGIN TRANSACTION")
    try:
        # One statement per HOURS_PER_STATEMENT hours: DuckDB's hash tables, and so its
        # memory, stay those of half a day (700 MB for 10M rows a day) however long the
        # backfill, and a lake of many small hours still needs few statements.
        for start in range(0, len(hours), HOURS_PER_STATEMENT):
            sources = _range_sources(conn, lake, hours[start:start + HOURS_PER_STATEMENT])
            conn.execute(f"DELETE FROM {metric.name} "
                         "WHERE hour IN (SELECT hour FROM range_hours)")
            written += conn.execute(f"INSERT INTO {metric.name} {sources} "
                                    f"SELECT * FROM ({metric.select_hours})").fetchone()[0]
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return written


def _range_sources(conn: duckdb.DuckDBPyConnection, lake: Lake,
                   hours: list[datetime]) -> str:
    """Fill the temporary table `range_hours` with `hours`; return the WITH clause that
    defines `range_rows` and `range_quarantine` over their files.

    Not views: a view reads the footer of every file to bind, then the query reads them
    again, which on a lake of many small files costs as much as the query.
    """
    conn.execute("CREATE OR REPLACE TEMP TABLE range_hours AS "
                 "SELECT unnest($1::TIMESTAMPTZ[]) AS hour", [hours])
    ctes = []
    for name, table, schema in (("range_rows", ROWS, rows_schema()),
                                ("range_quarantine", QUARANTINE, QUARANTINE_SCHEMA)):
        source = hours_source(lake, table, hours)
        if source is None:
            empty = schema.insert(0, pa.field("hour", pa.timestamp("us", "UTC"))).empty_table()
            conn.register(f"_{name}_empty", empty)
            source = f"_{name}_empty"
        ctes.append(f"{name} AS NOT MATERIALIZED (SELECT * FROM {source})")
    return "WITH " + ", ".join(ctes)
