"""Arrow schemas of the parser's output and the result type that carries them."""

from dataclasses import dataclass

import pyarrow as pa

from logstack_dagster.parser.formats import LogFormat

PARSED_SCHEMA = pa.schema(
    [
        pa.field("line_index", pa.int32(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("utc_offset", pa.string()),
        pa.field("client", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("ident", pa.string()),
        pa.field("user", pa.string()),
        pa.field("method", pa.string()),
        pa.field("target", pa.string()),
        pa.field("path", pa.string()),
        pa.field("query", pa.string()),
        pa.field("path_decoded", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("request", pa.string()),
        pa.field("status_code", pa.int32()),
        pa.field("bytes_sent", pa.int64()),
        pa.field("referrer", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("vhost", pa.string()),
        pa.field("server_port", pa.int32()),
        pa.field("forwarded_for", pa.string()),
        pa.field("extra_fields", pa.list_(pa.string()), nullable=False),
        pa.field("malformed_request", pa.bool_(), nullable=False),
        pa.field("tz_missing", pa.bool_(), nullable=False),
        pa.field("line_truncated", pa.bool_(), nullable=False),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("line_index", pa.int32(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

# Intermediate columns shared by the fast and the lenient path before the final derivation.
# Text fields are still as logged ("-" included); times are already resolved.
RAW_SCHEMA = pa.schema(
    [
        pa.field("line_index", pa.int32()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("utc_offset", pa.string()),
        pa.field("tz_missing", pa.bool_()),
        pa.field("line_truncated", pa.bool_()),
        pa.field("client", pa.string()),
        pa.field("ident", pa.string()),
        pa.field("user", pa.string()),
        pa.field("request", pa.string()),
        pa.field("method", pa.string()),
        pa.field("target", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("status", pa.string()),
        pa.field("bytes", pa.string()),
        pa.field("referrer", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("vhost", pa.string()),
        pa.field("port", pa.string()),
        pa.field("xff", pa.string()),
        pa.field("extra", pa.list_(pa.string())),
    ]
)


@dataclass(frozen=True)
class ParseResult:
    """Outcome of one batch: accepted rows, quarantined lines and the format used.

    Every input position appears exactly once, either in `rows.line_index` or in
    `rejects.line_index`.
    """

    rows: pa.Table
    rejects: pa.Table
    format_name: str
    # The format itself: a detected W3C header or custom string is not recoverable by name,
    # so a caller that pins the format for later batches should keep this.
    log_format: LogFormat | None = None

    @property
    def accepted(self) -> int:
        return self.rows.num_rows

    @property
    def rejected(self) -> int:
        return self.rejects.num_rows


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def rejects_table(rejects: list[tuple[int, str, str]]) -> pa.Table:
    """Build the rejects table from (line_index, reason, message) tuples, sorted by index."""
    rejects = sorted(rejects)
    return pa.table(
        {
            "line_index": pa.array([r[0] for r in rejects], pa.int32()),
            "reason": pa.array([r[1] for r in rejects], pa.string()),
            "message": pa.array([r[2] for r in rejects], pa.string()),
        },
        schema=REJECT_SCHEMA,
    )
