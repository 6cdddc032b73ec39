"""The columns of the lake's tables, composed from the stages that produce them."""

from __future__ import annotations

import pyarrow as pa

SOURCE_SCHEMA = pa.schema([
    ("topic", pa.string()),
    ("partition", pa.int32()),
    ("offset", pa.int64()),
])
"""Where each row came from: the coordinates of its topic record."""


def rows_schema() -> pa.Schema:
    """The `requests` table: parsed fields, then enrichment, then source coordinates."""
    from logstack_dagster.enrichment.pipeline import ENRICHMENT_SCHEMA
    from logstack_dagster.parser import PARSED_SCHEMA

    parsed = [f for f in PARSED_SCHEMA if f.name != "line_index"]
    return pa.schema([*parsed, *ENRICHMENT_SCHEMA, *SOURCE_SCHEMA])
