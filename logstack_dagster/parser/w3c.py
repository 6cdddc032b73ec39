"""W3C extended log files (IIS and friends): `#Fields:` names the space-separated columns.

Directive lines (`#Software`, `#Version`, `#Date`, `#Fields`) carry no request; they are
listed among the rejects with reason `w3c_directive` so every position stays accounted for,
and counters of bad data should leave that reason out. W3C times are UTC by definition.
"""

import pyarrow as pa

from logstack_dagster.parser.formats import LogFormat
from logstack_dagster.parser.lenient import Reject, checked_field, quote
from logstack_dagster.parser.schema import RAW_SCHEMA
from logstack_dagster.parser.timefields import BadTimestamp, parse_time

# W3C field name -> raw column; date, time, cs-uri-query and cs-uri handled apart.
W3C_COLUMNS = {
    "c-ip": "client", "cs-username": "user", "cs-method": "method", "cs-uri-stem": "target",
    "cs-version": "protocol", "sc-status": "status", "sc-bytes": "bytes",
    "cs(user-agent)": "user_agent", "cs(referer)": "referrer", "cs-host": "vhost",
    "s-port": "port", "cs(x-forwarded-for)": "xff", "x-forwarded-for": "xff",
}
_PLUS_ENCODED = {"user_agent", "referrer"}


def parse_w3c(text: pa.Array, keep: pa.Array, fmt: LogFormat) -> tuple[pa.Table, list]:
    """Raw rows and rejects of a W3C batch; `#Fields:` lines re-map the following lines."""
    fields = [f.lower() for f in fmt.w3c_fields]
    rows, rejects = [], []
    for i, (line, kept) in enumerate(zip(text.to_pylist(), keep.to_pylist())):
        if not kept:
            continue
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                fields = [f.lower() for f in line[8:].split()]
            message = f"W3C directive line, not a request: {quote(line)}"
            rejects.append((i, "w3c_directive", message))
            continue
        try:
            rows.append(_row(i, line.split(), fields))
        except Reject as exc:
            rejects.append((i, exc.reason, str(exc)))
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA), rejects


def _row(index: int, values: list[str], fields: list[str]) -> dict:
    if len(values) != len(fields):
        raise Reject("no_match", f"line has {len(values)} fields where the #Fields header "
                                 f"names {len(fields)}: {quote(' '.join(values))}")
    record = dict(zip(fields, values))
    row = {"line_index": index, "extra": [], "tz_missing": False, "line_truncated": False}
    for name, value in record.items():
        column = W3C_COLUMNS.get(name)
        if column:
            value = value.replace("+", " ") if column in _PLUS_ENCODED else value
            row[column] = checked_field(column, value)
        elif name not in ("date", "time", "cs-uri-query"):
            row["extra"].append(value)

    query = record.get("cs-uri-query", "-")
    if row.get("target") and query != "-":
        row["target"] += "?" + query
    stamp = f"{record.get('date', '')}T{record.get('time', '')}Z"
    try:
        row["event_time"], _ = parse_time(stamp)
    except BadTimestamp:
        message = f"date/time {quote(stamp[:-1])} is not a W3C UTC time"
        raise Reject("bad_timestamp", message) from None
    return row
