"""`logstack report`: the starter answers with the owner network of each offender."""

from __future__ import annotations

import json
import logging

import duckdb

from logstack_dagster.errors import LogstackError
from logstack_dagster.lake.duck import connect
from logstack_dagster.lake.layout import Lake
from logstack_dagster.report.answers import Answers, render_text, starter_answers
from logstack_dagster.settings import Settings

log = logging.getLogger(__name__)


def print_report(settings: Settings, as_json: bool, top: int, whois_timeout: float) -> None:
    """Print the answers as text tables, or as one JSON object."""
    conn = connect(Lake.open(settings.lake), settings.duckdb_path)
    try:
        answers = starter_answers(conn, top)
    except duckdb.CatalogException:
        raise LogstackError("no metric tables yet: run `logstack materialize` first") from None
    finally:
        conn.close()

    add_owners(settings, answers, whois_timeout)
    if as_json:
        print(json.dumps(answers.to_json(), default=str))
    else:
        print(render_text(answers))


def add_owners(settings: Settings, answers: Answers, timeout: float) -> None:
    """Put the owner network (RDAP through ipwhois) beside each offender, cached in DuckDB.

    The cache lives in the metrics database; when another process holds it for writing,
    lookups still run, uncached.
    """
    from logstack_dagster.enrichment.whois import OwnerLookup

    ips = sorted({r["ip"] for r in answers.offenders if r.get("ip")})
    lookup = OwnerLookup(timeout=timeout)
    cache = _cache_connection(settings)
    try:
        owners = lookup.lookup_many(ips, cache)
    finally:
        if cache is not None:
            cache.close()
    for row in answers.offenders:
        owner = owners.get(row.get("ip") or "")
        row["owner"] = owner.label if owner is not None else "unknown"


def _cache_connection(settings: Settings) -> duckdb.DuckDBPyConnection | None:
    try:
        return duckdb.connect(str(settings.duckdb_path))
    except duckdb.IOException as exc:
        log.warning("owner networks uncached: %s", exc)
        return None
