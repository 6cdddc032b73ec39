"""Text formats end to end: strict vectorised pass, lenient pass on the rest, raw rows."""

import re

import pyarrow as pa
import pyarrow.compute as pc

from logstack_dagster.parser.fastpath import cut_fields
from logstack_dagster.parser.formats import LogFormat
from logstack_dagster.parser.lenient import LenientParser, Reject
from logstack_dagster.parser.patterns import SECOND_TIME, strict_pattern
from logstack_dagster.parser.schema import RAW_SCHEMA
from logstack_dagster.parser.timefields import clf_times, iso_times

_TAIL_FIELD = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')
_XFF_ONLY = r'^ "[^"\\]*"$'
_EMPTY_LIST = pa.scalar([], pa.list_(pa.string()))


def parse_text(text: pa.Array, keep: pa.Array, fmt: LogFormat) -> tuple[pa.Table, list]:
    """Raw rows (RAW_SCHEMA) of the kept lines that parse, and rejects for those that do not."""
    strict = pc.and_(pc.fill_null(pc.match_substring_regex(text, strict_pattern(fmt)), False),
                     keep)
    all_strict = pc.all(strict).as_py()
    lines = text if all_strict else pc.filter(text, strict)
    fast, glued = _fast_rows(fmt, lines, pc.indices_nonzero(strict))

    # Lines the strict pattern refused, strict lines whose time turned out unreal, and those
    # whose trailing fields hold a second line (the lenient path refuses them with reasons).
    good = pc.and_(pc.is_valid(fast["event_time"]), pc.invert(glued))
    slow_index = [] if all_strict else pc.indices_nonzero(
        pc.and_(keep, pc.invert(strict))).to_pylist()
    if fast.num_rows and not pc.all(good).as_py():
        slow_index += pc.filter(fast["line_index"], pc.invert(good)).to_pylist()
        fast = fast.filter(good)

    rows, rejects = [], []
    parser = LenientParser(fmt)
    for i in sorted(slow_index):
        try:
            rows.append(parser.parse(i, text[i].as_py()))
        except Reject as exc:
            rejects.append((i, exc.reason, str(exc)))
    slow = pa.Table.from_pylist(rows, schema=RAW_SCHEMA)
    return pa.concat_tables([fast, slow]), rejects


def _fast_rows(fmt: LogFormat, lines: pa.Array, index: pa.Array) -> tuple[pa.Table, pa.Array]:
    """Raw rows of strictly valid lines, and which of them have a second timestamp in their
    trailing fields (a space is all a lost newline leaves between two lines)."""
    values, tail = cut_fields(fmt, lines)
    n = len(lines)
    glued = pa.nulls(n, pa.bool_()).fill_null(False)
    if tail is not None and pc.max(pc.binary_length(tail)).as_py():
        glued = pc.fill_null(pc.match_substring_regex(tail, SECOND_TIME), False)
    columns = {"line_index": pc.cast(index, pa.int32())}
    extras = []
    for i, token in enumerate(fmt.tokens):
        if token.name in ("time", "time_iso"):
            times = clf_times if token.name == "time" else iso_times
            event_time, offset, _ = times(values[i])
            columns.update(event_time=event_time, utc_offset=offset)
        elif token.name == "hostport":
            columns["vhost"] = values[i]
        elif token.name == "extra":
            extras.append(values[i])
        elif token.name:
            columns[token.name] = values[i]

    columns["tz_missing"] = pa.array([False] * n)
    columns["line_truncated"] = columns["tz_missing"]
    xff, columns["extra"] = _extras(extras, tail, n, "xff" in columns)
    if xff is not None:
        columns["xff"] = xff
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in RAW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA), glued


def _extras(extras: list, tail, n: int, has_xff: bool):
    """(xff, extra list) from the format's own extra fields and the trailing text."""
    if tail is None and not extras:
        return None, pa.array([[]] * n, pa.list_(pa.string()))
    if tail is not None and not extras and not has_xff:
        xff_only = pc.fill_null(pc.match_substring_regex(tail, _XFF_ONLY), False)
        empty = pc.equal(tail, "")
        if pc.all(pc.or_(xff_only, empty)).as_py():
            xff = pc.if_else(xff_only, pc.utf8_slice_codeunits(tail, 2, -1), None)
            return xff, pa.array([[]] * n, pa.list_(pa.string()))

    # Rare shapes: build the lists in Python.
    own = [c.to_pylist() for c in extras]
    tails = tail.to_pylist() if tail is not None else [""] * n
    xff, lists = [], []
    for k in range(n):
        fields = [col[k] for col in own]
        first = None
        for j, m in enumerate(_TAIL_FIELD.finditer(tails[k] or "")):
            quoted, bare = m.groups()
            if j == 0 and quoted is not None and not has_xff:
                first = quoted
            else:
                fields.append(bare if bare is not None else quoted)
        xff.append(first)
        lists.append(fields)
    return (None if has_xff else pa.array(xff, pa.string())), pa.array(lists, pa.list_(pa.string()))
