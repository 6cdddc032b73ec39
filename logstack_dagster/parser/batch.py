"""`parse_lines`: one batch of raw records in, accepted rows and rejects out."""

import re
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logstack_dagster.parser.derive import derive_rows
from logstack_dagster.parser.detect import detect_in_text
from logstack_dagster.parser.formats import JSON, W3C, LogFormat
from logstack_dagster.parser.jsonlines import parse_json
from logstack_dagster.parser.lenient import quote
from logstack_dagster.parser.lines import format_free_rejects, to_text
from logstack_dagster.parser.presets import resolve_format
from logstack_dagster.parser.schema import PARSED_SCHEMA, ParseResult, rejects_table
from logstack_dagster.parser.textparse import parse_text
from logstack_dagster.parser.timefields import UTC_US
from logstack_dagster.parser.w3c import parse_w3c

# Twice the 32 KiB a default Kafka-friendly record allows for URL-heavy lines; a longer line
# is rejected as `too_long` rather than held in memory through the lenient path.
DEFAULT_MAX_LINE_BYTES = 64 * 1024


def parse_lines(
    lines: Sequence[bytes],
    fmt: "str | LogFormat | None" = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ParseResult:
    """Parse one batch of access-log records.

    Takes raw records (bytes, line endings allowed) and a format: a preset name, an Apache or
    nginx format string, a LogFormat, or None/"auto" to detect it from a sample of the batch.
    Returns a ParseResult whose rows follow PARSED_SCHEMA; every input position is in exactly
    one of `rows.line_index` and `rejects.line_index`. Raises ValueError for a bad format spec.
    """
    text = to_text(lines)
    if fmt is None or fmt == "auto":
        chosen = detect_in_text(text)
    else:
        chosen = resolve_format(fmt)
    try:
        result = _parse_text_as(text, chosen, max_line_bytes)
    except (AssertionError, KeyboardInterrupt):
        raise
    except Exception:
        # A line the parser has no answer for fails its batch, and the batch would fail
        # again on every run: the partition could never be read past it. Such lines are
        # found by halving and quarantined with the error; the others parse as usual.
        result = _parse_apart(text, chosen, max_line_bytes)
    _check_accounted(result, len(text))
    return result


def _parse_text_as(text: pa.Array, chosen: LogFormat, max_line_bytes: int) -> ParseResult:
    keep, rejects = format_free_rejects(text, max_line_bytes)
    if chosen.kind == W3C:
        raw, more = parse_w3c(text, keep, chosen)
    elif chosen.kind == JSON:
        raw, more = parse_json(text, keep, chosen)
    else:
        raw, more = parse_text(text, keep, chosen)

    raw, beyond = _beyond_datetime(raw, text)
    raw, oversized = _beyond_integers(raw, text)
    rows = derive_rows(raw)
    if not _ascending(rows["line_index"]):
        rows = rows.sort_by("line_index")
    refused = rejects + more + beyond + oversized
    return ParseResult(rows=rows, rejects=rejects_table(refused),
                       format_name=chosen.name, log_format=chosen)


def _parse_apart(text: pa.Array, chosen: LogFormat, max_line_bytes: int,
                 start: int = 0) -> ParseResult:
    """`_parse_text_as` on halves of `text` until the lines that fail it are alone; those
    are rejected as `parser_error` with what failed. Line positions count from `start`."""
    try:
        part = _parse_text_as(text, chosen, max_line_bytes)
    except (AssertionError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if len(text) == 1:
            line = text[0].as_py() or ""
            return ParseResult(
                rows=PARSED_SCHEMA.empty_table(),
                rejects=rejects_table([(start, "parser_error", f"the parser failed on this "
                                        f"line ({type(exc).__name__}: {exc}): {quote(line)}")]),
                format_name=chosen.name, log_format=chosen)
        half = len(text) // 2
        first = _parse_apart(text.slice(0, half), chosen, max_line_bytes, start)
        second = _parse_apart(text.slice(half), chosen, max_line_bytes, start + half)
        return ParseResult(rows=pa.concat_tables([first.rows, second.rows]),
                           rejects=pa.concat_tables([first.rejects, second.rejects]),
                           format_name=chosen.name, log_format=chosen)
    if start:
        part = ParseResult(rows=_shifted(part.rows, start), rejects=_shifted(part.rejects, start),
                           format_name=chosen.name, log_format=chosen)
    return part


def _shifted(table: pa.Table, start: int) -> pa.Table:
    """`table` with `start` added to its line positions."""
    index = table.schema.get_field_index("line_index")
    moved = pc.add(table.column(index), pa.scalar(start, pa.int32()))
    return table.set_column(index, table.schema.field(index), moved)


# The instants Python's datetime holds, which the lake's hour folders and its readers use:
# a time that only Arrow can hold (`01/Jan/0001:00:00:00 +1400` is in year 0 in UTC) would
# fail every write of its batch.
EARLIEST = pa.scalar(datetime(1, 1, 1, tzinfo=timezone.utc), UTC_US)
LATEST = pa.scalar(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), UTC_US)


def _beyond_datetime(raw: pa.Table, text: pa.Array) -> tuple[pa.Table, list]:
    """`raw` without the rows timed outside EARLIEST to LATEST, and rejects for those."""
    times = raw["event_time"]
    beyond = pc.fill_null(pc.or_(pc.less(times, EARLIEST), pc.greater(times, LATEST)), False)
    if not pc.any(beyond).as_py():
        return raw, []
    rejects = [(i, "bad_timestamp", "timestamp is outside the years 1 to 9999 in UTC: "
                + quote(text[i].as_py()))
               for i in pc.filter(raw["line_index"], beyond).to_pylist()]
    return raw.filter(pc.invert(beyond)), rejects


# A number over 65535: six digits or more, or five from 65536 up.
_PORT_OVER = r"(?:\d{6,}|6553[6-9]|655[4-9]\d|65[6-9]\d\d|6[6-9]\d{3}|[7-9]\d{4})"


# No response is 8 PiB, and with every count at most this, an hour's sum stays in a BIGINT
# unless it has over a thousand of them (the metric tables failed on one of 2**63 - 1).
MAX_BYTES = 2**53


def _beyond_integers(raw: pa.Table, text: pa.Array) -> tuple[pa.Table, list]:
    """`raw` without the rows whose byte count is past MAX_BYTES or port past 65535, and
    rejects for those: such a number is garbage, and one past what its column holds would
    fail the cast of its whole batch. Only rows whose numbers look too large are looked at
    one by one."""
    suspect = pc.greater(pc.binary_length(raw["bytes"]), len(str(MAX_BYTES)) - 1)
    for column, pattern in (("port", f"^{_PORT_OVER}$"), ("vhost", f":{_PORT_OVER}$")):
        if raw[column].null_count < raw.num_rows:
            suspect = pc.or_kleene(suspect, pc.match_substring_regex(raw[column], pattern))
    suspect = pc.fill_null(suspect, False)
    if not pc.any(suspect).as_py():
        return raw, []
    rejects = []
    for row in raw.filter(suspect).select(["line_index", "bytes", "vhost", "port"]).to_pylist():
        glued = re.fullmatch(r"[^:]*:(\d+)", row["vhost"] or "")
        port = row["port"] or (glued[1] if glued else None)
        for value, limit, reason, what in ((row["bytes"], MAX_BYTES, "bad_bytes", "byte count"),
                                           (port, 65535, "bad_port", "port")):
            if value and value.isdigit() and int(value) > limit:
                line = row["line_index"]
                rejects.append((line, reason, f"{what} {quote(value)} is over {limit:,}: "
                                + quote(text[line].as_py())))
                break
    refused = pa.array([line for line, _, _ in rejects], pa.int32())
    return raw.filter(pc.invert(pc.is_in(raw["line_index"], value_set=refused))), rejects


def _ascending(index: pa.ChunkedArray) -> bool:
    """Whether the row positions are already in order (no line took the lenient path)."""
    values = index.to_numpy()
    return bool(np.all(values[1:] > values[:-1]))


def _check_accounted(result: ParseResult, count: int) -> None:
    """The product's promise: each input position exactly once in rows or rejects."""
    seen = pa.concat_arrays(
        [result.rows["line_index"].combine_chunks(), result.rejects["line_index"].combine_chunks()]
    )
    if len(seen) != count or pc.count_distinct(seen).as_py() != count:
        raise AssertionError(
            f"parser lost track of lines: {count} in, {result.accepted} rows + "
            f"{result.rejected} rejects out"
        )
