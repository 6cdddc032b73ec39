"""The answers of `logstack report`, read from the hourly metric tables.

Requests per hour, by status code, by country; the top paths, referrers and 404 paths;
the non-200 offenders (status code and client) with the network that owns each address;
parse failures per hour; and, when the lake tells humans from bots, the top bots.

Every query reads the tables by their plain names, so it runs alike on the real metric
tables and on ones rebuilt from the lake for a filter (see `sources.py`). Top paths and
referrers are sums of each hour's top 100, as the metric tables keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from logstack_dagster.metrics.tables import (
    AUDIENCE,
    COUNTRIES,
    NETWORKS,
    NOT_FOUND,
    OFFENDERS,
    STATUS_CODES,
    TOP_BOTS,
    TOP_PATHS,
    TOP_REFERRERS,
    TRAFFIC,
)
from logstack_dagster.report.filters import ReportFilter
from logstack_dagster.report.sources import LeftOut
from logstack_dagster.words import plural

SOURCE_WORDS = {
    "metrics": "the hourly metric tables",
    "lake": "the lake, through the metric tables' own SQL",
}

AUDIENCE_KEYS = ("humans", "bots", "other", "unclassified")

# Past this many hours the text report counts requests per day instead of per hour.
TEXT_HOURS_MAX = 72


@dataclass
class Answers:
    """What `logstack report` shows; `to_json` is its `--json` form.

    `audience` is False when the metric tables cannot tell humans from bots; `traffic`
    rows then have no `humans`, `bots`, `other` and `unclassified` counts, and `bots` (the
    busiest bots) is None. `networks` holds the requests from data-centre networks and
    their share of the requests with ASN data (None without an `hourly_networks` table;
    a share of None without ASN data).
    """

    hours: int
    first_hour: datetime | None
    last_hour: datetime | None
    requests: int
    quarantined: int
    bytes_sent: int = 0
    source: str = "metrics"
    report_filter: ReportFilter = field(default_factory=ReportFilter)
    traffic: list[dict] = field(default_factory=list)
    status_codes: list[dict] = field(default_factory=list)
    status_by_hour: list[dict] = field(default_factory=list)
    countries: list[dict] = field(default_factory=list)
    top_paths: list[dict] = field(default_factory=list)
    top_referrers: list[dict] = field(default_factory=list)
    not_found_paths: list[dict] = field(default_factory=list)
    offenders: list[dict] = field(default_factory=list)
    bots: list[dict] | None = None
    audience: bool = False
    networks: dict | None = None
    left_out: LeftOut = field(default_factory=LeftOut)

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "report_filter"}
        data["filter"] = self.report_filter.to_json()
        data["left_out"] = self.left_out.to_json()
        return _jsonable(data)


def starter_answers(conn: duckdb.DuckDBPyConnection, top: int = 20,
                    report_filter: ReportFilter | None = None, *,
                    source: str = "metrics") -> Answers:
    """Sum the metric tables over the hours `report_filter` keeps (every hour by default).

    When the audience tables exist (`hourly_audience`, `hourly_top_bots`: the lake has
    the user-agent columns) the hourly counts are split into humans, bots and the rest,
    and the busiest bots are listed.
    """
    report_filter = report_filter or ReportFilter()
    where = report_filter.hour_sql()
    hours, first, last, requests, quarantined, bytes_sent = conn.execute(f"""
        SELECT count(*), min(hour), max(hour), coalesce(sum(requests), 0),
               coalesce(sum(quarantined), 0), coalesce(sum(bytes_sent), 0)
        FROM {TRAFFIC.name} WHERE {where}
    """).fetchone()
    answers = Answers(
        hours=hours, first_hour=first, last_hour=last, requests=int(requests),
        quarantined=int(quarantined), bytes_sent=int(bytes_sent), source=source,
        report_filter=report_filter,
        traffic=_records(conn, TRAFFIC.name, f"""
            SELECT hour, requests, quarantined, unique_ips, bytes_sent
            FROM {TRAFFIC.name} WHERE {where} ORDER BY hour
        """),
        status_codes=_records(conn, STATUS_CODES.name, f"""
            SELECT status_code, sum(requests)::BIGINT AS requests
            FROM {STATUS_CODES.name} WHERE {where}
            GROUP BY status_code ORDER BY requests DESC, status_code
        """),
        status_by_hour=_records(conn, STATUS_CODES.name, f"""
            SELECT hour, {status_class_sql('status_code')} AS status_class,
                   sum(requests)::BIGINT AS requests
            FROM {STATUS_CODES.name} WHERE {where}
            GROUP BY hour, status_class ORDER BY hour, status_class
        """),
        # A lake ingested without enrichment (`--no-enrich`) has no country columns; a
        # table missing for that reason or any other reads as empty (see `_records`).
        countries=_records(conn, COUNTRIES.name, f"""
            SELECT country, any_value(country_name) AS country_name,
                   sum(requests)::BIGINT AS requests
            FROM {COUNTRIES.name} WHERE {where}
            GROUP BY country ORDER BY requests DESC, country LIMIT {top}
        """),
        top_paths=_summed(conn, TOP_PATHS.name, "path", where, top),
        top_referrers=_summed(conn, TOP_REFERRERS.name, "referrer", where, top),
        not_found_paths=_summed(conn, NOT_FOUND.name, "path", where, top),
        offenders=_records(conn, OFFENDERS.name, f"""
            SELECT status_code, client, any_value(ip) AS ip, sum(requests)::BIGINT AS requests
            FROM {OFFENDERS.name} WHERE {where} GROUP BY status_code, client
            ORDER BY requests DESC, status_code, client LIMIT {top}
        """),
    )
    if _has_table(conn, AUDIENCE.name):
        _split_audience(conn, answers, where)
    if _has_table(conn, TOP_BOTS.name):
        answers.bots = _records(conn, TOP_BOTS.name, f"""
            SELECT coalesce(bot_name, 'unnamed') AS bot_name, bot_category,
                   sum(requests)::BIGINT AS requests
            FROM {TOP_BOTS.name} WHERE {where} GROUP BY ALL
            ORDER BY requests DESC, bot_name, bot_category LIMIT {top}
        """)
    if _has_table(conn, NETWORKS.name):
        answers.networks = _records(conn, NETWORKS.name, f"""
            SELECT coalesce(sum(requests) FILTER (WHERE datacenter), 0)::BIGINT
                       AS datacenter_requests,
                   coalesce(sum(requests) FILTER (WHERE datacenter IS NOT NULL), 0)::BIGINT
                       AS requests_with_asn,
                   round(sum(requests) FILTER (WHERE datacenter)
                         / sum(requests) FILTER (WHERE datacenter IS NOT NULL), 4)
                       AS datacenter_share
            FROM {NETWORKS.name} WHERE {where}
        """)[0]
    return answers


def status_class_sql(column: str) -> str:
    """SQL naming the class of a status code: '2xx', '4xx', ..., or 'none'."""
    return (f"CASE WHEN {column} IS NULL THEN 'none' "
            f"ELSE ({column} // 100)::VARCHAR || 'xx' END")


def _split_audience(conn: duckdb.DuckDBPyConnection, answers: Answers, where: str) -> None:
    """Add `humans`, `bots`, `other` (empty or unrecognised agents) and `unclassified`
    (rows ingested before the user-agent enrichment) to each hour; they sum to requests."""
    split = {hour: counts for hour, *counts in conn.execute(f"""
        SELECT hour,
               coalesce(sum(requests) FILTER (WHERE NOT is_bot AND ua_class = 'human'), 0),
               coalesce(sum(requests) FILTER (WHERE is_bot), 0),
               coalesce(sum(requests) FILTER (
                   WHERE NOT is_bot AND ua_class IS DISTINCT FROM 'human'), 0),
               coalesce(sum(requests) FILTER (WHERE is_bot IS NULL), 0)
        FROM {AUDIENCE.name} WHERE {where} GROUP BY hour
    """).fetchall()}
    for row in answers.traffic:
        counts = split.get(row["hour"], (0, 0, 0, 0))
        row.update(zip(AUDIENCE_KEYS, (int(c) for c in counts)))
    answers.audience = True


def _has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $1", [name]
    ).fetchone()[0] > 0


def _summed(conn: duckdb.DuckDBPyConnection, table: str, column: str, where: str,
            top: int) -> list[dict]:
    return _records(conn, table, f"""
        SELECT {column}, sum(requests)::BIGINT AS requests FROM {table} WHERE {where}
        GROUP BY {column} ORDER BY requests DESC, {column} LIMIT {top}
    """)


def _records(conn: duckdb.DuckDBPyConnection, table: str, sql: str) -> list[dict]:
    """The rows of `sql` as dicts; none when `table`, which it reads, does not exist (a
    metric table not built yet: its asset never ran, or a check held its hours back)."""
    if not _has_table(conn, table):
        return []
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def render_text(answers: Answers) -> str:
    """The answers as plain-text tables for a terminal."""
    where = answers.report_filter.describe()
    lines = [
        (f"{plural(answers.requests, 'request')} and "
         f"{plural(answers.quarantined, 'quarantined line')} "
         f"over {plural(answers.hours, 'hour')} ({_hour(answers.first_hour)} to "
         f"{_hour(answers.last_hour)})"),
        f"Counted from {SOURCE_WORDS.get(answers.source, answers.source)}"
        + (f"; {where}." if where else "."),
        *(["Parse failures are not filtered by vhost or bot: unparsed lines have neither."]
          if answers.report_filter.needs_lake else []),
        *left_out_lines(answers.left_out),
        "",
        *_traffic_section(answers),
        "",
        "Requests by country",
        *text_table(["country", "name", "requests"],
                    [(r["country"], r["country_name"] or "", r["requests"])
                     for r in answers.countries]),
        "",
        "Requests by status code",
        *text_table(["status", "requests"],
                    [(r["status_code"], r["requests"]) for r in answers.status_codes]),
        "",
        "Top paths",
        *text_table(["path", "requests"],
                    [(_cut(r["path"]), r["requests"]) for r in answers.top_paths]),
        "",
        "Top referrers",
        *text_table(["referrer", "requests"],
                    [(_cut(r["referrer"]), r["requests"]) for r in answers.top_referrers]),
        "",
        "Paths answered 404",
        *text_table(["path", "requests"],
                    [(_cut(r["path"]), r["requests"]) for r in answers.not_found_paths]),
        "",
        "Non-200 responses by status code and client",
        *text_table(["status", "client", "requests", "owner network"],
                    [(r["status_code"], r["client"], r["requests"], r.get("owner", "unknown"))
                     for r in answers.offenders]),
    ]
    if answers.bots is not None:
        lines += ["", "Top bots",
                  *text_table(["bot", "category", "requests"],
                              [(r["bot_name"], r["bot_category"], r["requests"])
                               for r in answers.bots])]
    if answers.networks is not None:
        lines += ["", _networks_line(answers.networks)]
    return "\n".join(lines)


def left_out_lines(left_out: LeftOut) -> list[str]:
    """One line for each kind of hour the report leaves out, none when it leaves none."""
    lines = []
    if left_out.hours:
        lines.append(
            f"Not counted: {plural(left_out.hours, 'hour')} of the lake "
            f"({plural(left_out.lines, 'line')}) {'is' if left_out.hours == 1 else 'are'} "
            "not in the metric tables yet: run "
            "`logstack materialize`, or `--source lake` to count them now.")
    if left_out.held_hours:
        lines.append(
            f"Counted in the hourly totals only: {plural(left_out.held_hours, 'hour')} "
            "whose other metric tables a failed check held back (see `logstack "
            "materialize`).")
    return lines


def _networks_line(networks: dict) -> str:
    share = networks["datacenter_share"]
    if share is None:
        return ("Data-centre networks: unknown (no ASN data; set GEOIP_ASN_DB to a "
                "GeoLite2-ASN database)")
    return (f"Data-centre networks: {share:.1%} of the {networks['requests_with_asn']:,} "
            f"requests with ASN data ({networks['datacenter_requests']:,} requests)")


def _traffic_section(answers: Answers) -> list[str]:
    """Requests per hour with a bar each, or per day when there are too many hours."""
    rows, grain = answers.traffic, "hour"
    if len(rows) > TEXT_HOURS_MAX:
        rows, grain = _per_day(rows), "day"
    split = answers.audience
    headers = [grain, "requests", *(["humans", "bots", "other"] if split else []),
               "quarantined", ""]
    peak = max((r["requests"] for r in rows), default=0)
    table = [
        (_hour(r["hour"]) if grain == "hour" else f"{r['hour']:%Y-%m-%d}",
         f"{r['requests']:,}",
         *((f"{r['humans']:,}", f"{r['bots']:,}",
            f"{r['requests'] - r['humans'] - r['bots']:,}") if split else ()),
         f"{r['quarantined']:,}", bar(r["requests"], peak))
        for r in rows
    ]
    return [f"Requests per {grain}", *text_table(headers, table)]


def _per_day(rows: list[dict]) -> list[dict]:
    days: dict[datetime, dict] = {}
    for row in rows:
        day = row["hour"].astimezone(UTC).replace(hour=0)
        total = days.setdefault(day, {"hour": day})
        for key, value in row.items():
            if key != "hour" and isinstance(value, int):
                total[key] = total.get(key, 0) + value
    return list(days.values())


def bar(value: int, peak: int, width: int = 30) -> str:
    """A bar of block characters, `width` long at `peak`; any non-zero value shows."""
    if peak <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / peak * width * 8))
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def text_table(headers: list[str], rows: list[tuple]) -> list[str]:
    """Rows under a header and a rule, two spaces in; numeric columns aligned right."""
    text = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    numeric = [all(r[i].replace(",", "").isdigit() for r in text) if text else False
               for i in range(len(headers))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w)
                         for c, w, n in zip(cells, widths, numeric)).rstrip()

    out = ["  " + fmt(headers), "  " + fmt(["-" * w for w in widths])]
    out += ["  " + fmt(r) for r in text] or ["  (none)"]
    return out


def _cut(text: str | None, width: int = 70) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[:width - 1] + "…"


def _hour(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:00 UTC") if value else "-"
