"""JSON-lines access logs (nginx `escape=json`, Caddy, Traefik) through a key mapping."""

import json
from datetime import datetime, timezone

import pyarrow as pa

from logstack_dagster.parser.formats import LogFormat
from logstack_dagster.parser.lenient import Reject, checked_field, quote
from logstack_dagster.parser.schema import RAW_SCHEMA
from logstack_dagster.parser.timefields import BadTimestamp, parse_time


def parse_json(text: pa.Array, keep: pa.Array, fmt: LogFormat) -> tuple[pa.Table, list]:
    """Raw rows and rejects of a batch of JSON objects, one per line."""
    rows, rejects = [], []
    for i, (line, kept) in enumerate(zip(text.to_pylist(), keep.to_pylist())):
        if not kept:
            continue
        try:
            rows.append(_row(i, line, fmt))
        except Reject as exc:
            rejects.append((i, exc.reason, str(exc)))
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA), rejects


def _row(index: int, line: str, fmt: LogFormat) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError has `msg`; a number of over 4,300 digits is a plain ValueError.
        why = getattr(exc, "msg", None) or type(exc).__name__
        raise Reject("bad_json", f"line is not JSON ({why}): {quote(line)}") from None
    if not isinstance(record, dict):
        raise Reject("bad_json", f"line is JSON but not an object: {quote(line)}")

    row = {"line_index": index, "extra": [], "tz_missing": False, "line_truncated": False}
    for column, keys in fmt.json_fields:
        value = _lookup(record, keys)
        if value is not None and column != "time":
            row[column] = checked_field(column, value)
    _time(row, _lookup(record, dict(fmt.json_fields)["time"], raw=True), line)
    return row


def _lookup(record: dict, keys, raw: bool = False):
    """First present key, literal or dotted path; lists give their first item."""
    for key in keys:
        value = record.get(key)
        if value is None and "." in key:
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None and value != "" and not isinstance(value, dict):
            return value if raw else str(value)
    return None


def _time(row: dict, value, line: str) -> None:
    if value is None:
        raise Reject("bad_timestamp", f"JSON line has no time field: {quote(line)}")
    if isinstance(value, bool):  # a bool is an int to Python: `true` would be 1970
        raise Reject("bad_timestamp", f"time {quote(str(value).lower())} is not a time: "
                     f"{quote(line)}")
    try:
        if isinstance(value, (int, float)):
            row["event_time"] = datetime.fromtimestamp(value, tz=timezone.utc)
            row["utc_offset"] = None
        else:
            row["event_time"], row["utc_offset"] = parse_time(str(value))
            row["tz_missing"] = row["utc_offset"] is None
    except (BadTimestamp, OverflowError, OSError, ValueError) as exc:
        raise Reject("bad_timestamp", f"time {quote(str(value))} is not usable: {exc}") from None
