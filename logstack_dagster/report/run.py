"""`logstack report`: the answers as text, JSON, an HTML page or PNG charts.

Offenders get the owner network of their address, looked up through RDAP and cached in
the metrics database.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb

from logstack_dagster.lake.layout import Lake
from logstack_dagster.report.answers import Answers, render_text, starter_answers
from logstack_dagster.report.filters import ReportFilter
from logstack_dagster.report.sources import open_source
from logstack_dagster.settings import Settings

log = logging.getLogger(__name__)


def load_answers(settings: Settings, report_filter: ReportFilter | None = None,
                 top: int = 20, prefer: str | None = None) -> Answers:
    """The answers for `report_filter` from whichever source can give them (see
    `sources.py`); `prefer` forces `metrics` or `lake`."""
    source = open_source(Lake.open(settings.lake), settings.duckdb_path,
                         report_filter or ReportFilter(), prefer)
    try:
        answers = starter_answers(source.conn, top, source.report_filter, source=source.kind)
        answers.left_out = source.left_out
        return answers
    finally:
        source.close()


def print_report(settings: Settings, as_json: bool, top: int, whois_timeout: float,
                 report_filter: ReportFilter | None = None, *, html: Path | None = None,
                 png: Path | None = None, prefer: str | None = None,
                 owners: bool = True) -> Answers:
    """Print the answers as text tables or one JSON object, and write the HTML page and
    PNG charts asked for. With a file to write and no `as_json`, only the files written
    are printed."""
    answers = load_answers(settings, report_filter, top, prefer)
    if owners:
        add_owners(settings, answers, whois_timeout)

    written = []
    if html is not None:
        written.append(write_html(answers, html))
    if png is not None:
        written += write_png(answers, png)
    if as_json:
        print(json.dumps(answers.to_json(), default=str))
    elif written:
        for path in written:
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    elif answers.requests == 0 and answers.quarantined == 0:
        words = report_filter.describe() if report_filter is not None else ""
        scope = f" ({words})" if words else ""
        print(f"no requests and no quarantined lines in the lake{scope}: {settings.lake}")
    else:
        print(render_text(answers))
    return answers


def write_html(answers: Answers, path: Path) -> Path:
    from logstack_dagster.report.html import render_html

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(answers), encoding="utf-8")
    return path


def write_png(answers: Answers, folder: Path) -> list[Path]:
    from logstack_dagster.report.charts import build_charts
    from logstack_dagster.report.png import write_pngs

    return write_pngs(build_charts(answers), folder)


def add_owners(settings: Settings, answers: Answers, timeout: float) -> None:
    """Put the owner network (RDAP through ipwhois) beside each offender, cached in DuckDB.

    The cache lives in the metrics database; when another process holds it for writing,
    lookups still run, uncached.
    """
    from logstack_dagster.enrichment.whois import OwnerLookup

    ips = sorted({r["ip"] for r in answers.offenders if r.get("ip")})
    owners = {}
    if ips:
        lookup = OwnerLookup(timeout=timeout, asn_db=settings.geoip_asn_db)
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
