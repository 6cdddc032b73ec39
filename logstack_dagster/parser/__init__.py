"""Access-log lines to Arrow tables: the parser, free of Dagster and Bytewax.

`parse_lines` is the one entry point; the rest is exported for callers that pin a format or
want to check one before a run.
"""

from logstack_dagster.parser.batch import DEFAULT_MAX_LINE_BYTES, parse_lines
from logstack_dagster.parser.detect import detect_format
from logstack_dagster.parser.formats import LogFormat
from logstack_dagster.parser.presets import PRESETS, resolve_format
from logstack_dagster.parser.schema import PARSED_SCHEMA, REJECT_SCHEMA, ParseResult

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "PARSED_SCHEMA",
    "PRESETS",
    "REJECT_SCHEMA",
    "LogFormat",
    "ParseResult",
    "detect_format",
    "parse_lines",
    "resolve_format",
]
