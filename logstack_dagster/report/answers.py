"""The starter answers, read from the hourly metric tables.

Requests by country, requests by status code, and the non-200 offenders (status code and
client) with the network that owns each client's address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from logstack_dagster.metrics.tables import COUNTRIES, OFFENDERS, STATUS_CODES, TRAFFIC


@dataclass
class Answers:
    """What `logstack report` prints; `to_json` is its `--json` form."""

    hours: int
    first_hour: datetime | None
    last_hour: datetime | None
    requests: int
    quarantined: int
    countries: list[dict] = field(default_factory=list)
    status_codes: list[dict] = field(default_factory=list)
    offenders: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        for key in ("first_hour", "last_hour"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def starter_answers(conn: duckdb.DuckDBPyConnection, top: int = 20) -> Answers:
    """Sum the metric tables over every hour they hold."""
    hours, first, last, requests, quarantined = conn.execute(f"""
        SELECT count(*), min(hour), max(hour), coalesce(sum(requests), 0),
               coalesce(sum(quarantined), 0)
        FROM {TRAFFIC.name}
    """).fetchone()
    return Answers(
        hours=hours, first_hour=first, last_hour=last, requests=int(requests),
        quarantined=int(quarantined),
        countries=_records(conn, f"""
            SELECT country, any_value(country_name) AS country_name,
                   sum(requests)::BIGINT AS requests
            FROM {COUNTRIES.name} GROUP BY country ORDER BY requests DESC, country LIMIT {top}
        """),
        status_codes=_records(conn, f"""
            SELECT status_code, sum(requests)::BIGINT AS requests
            FROM {STATUS_CODES.name} GROUP BY status_code ORDER BY requests DESC, status_code
        """),
        offenders=_records(conn, f"""
            SELECT status_code, client, any_value(ip) AS ip, sum(requests)::BIGINT AS requests
            FROM {OFFENDERS.name} GROUP BY status_code, client
            ORDER BY requests DESC, status_code, client LIMIT {top}
        """),
    )


def render_text(answers: Answers) -> str:
    """The answers as plain-text tables for a terminal."""
    lines = [
        f"{answers.requests:,} requests and {answers.quarantined:,} quarantined lines "
        f"over {answers.hours} hours ({_hour(answers.first_hour)} to {_hour(answers.last_hour)})",
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
        "Non-200 responses by status code and client",
        *text_table(["status", "client", "requests", "owner network"],
                [(r["status_code"], r["client"], r["requests"], r.get("owner", "unknown"))
                 for r in answers.offenders]),
    ]
    return "\n".join(lines)


def _records(conn: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def text_table(headers: list[str], rows: list[tuple]) -> list[str]:
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


def _hour(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:00 UTC") if value else "-"
