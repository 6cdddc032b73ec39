"""The slow path: Python regexes, one line at a time, for what the strict pattern refused.

Each refused line is tried against the lenient patterns in order; the first that matches
and whose fields validate wins. A line no pattern takes is rejected with the most specific
reason found.
"""

import re

from logstack_dagster.parser.formats import LogFormat
from logstack_dagster.parser.patterns import (
    SECOND_TIME,
    is_quoted,
    lenient_literal,
    lenient_patterns,
)
from logstack_dagster.parser.timefields import BadTimestamp, parse_time

QUOTE_LIMIT = 120
_SECOND_TIME = re.compile(SECOND_TIME)
# In a quoted field a time is the field's own text (a user agent may hold one), unless the
# field also holds a quote the line did not escape: where one line ended or the next began.
_BARE_QUOTE = re.compile(r'(?<!\\)"')
_TAIL_FIELD = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')


class Reject(ValueError):
    """A line that cannot be kept: `reason` is the stable code, str() the sentence."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def quote(text: str) -> str:
    """The text in repr quotes, cut to a readable length."""
    if len(text) > QUOTE_LIMIT:
        return repr(text[:QUOTE_LIMIT]) + f" (+{len(text) - QUOTE_LIMIT} chars)"
    return repr(text)


class LenientParser:
    """Parses single lines of one text format into raw rows (dicts keyed like RAW_SCHEMA)."""

    def __init__(self, fmt: LogFormat):
        self.fmt = fmt
        self.patterns = lenient_patterns(fmt)
        self.names = [t.name for t in fmt.tokens if t.name]
        self.quoted = [is_quoted(fmt.tokens, i) for i, t in enumerate(fmt.tokens) if t.name]
        self.prefix = _time_prefix(fmt)

    def parse(self, index: int, line: str) -> dict:
        """Raw row of one line; raises Reject when no pattern both matches and validates."""
        first_error = None
        for pattern, cut_off in self.patterns:
            m = pattern.match(line)
            if not m:
                continue
            try:
                row = self._row(index, m.groups())
            except Reject as exc:
                first_error = first_error or exc
                continue
            row["line_truncated"] = cut_off
            return row
        if first_error:
            raise first_error
        raise self._no_match(line)

    def _row(self, index: int, groups: tuple) -> dict:
        row = {"line_index": index, "extra": [], "tz_missing": False, "line_truncated": False}
        for name, value, quoted in zip(self.names, groups, self.quoted):
            if _SECOND_TIME.search(value) and (not quoted or _BARE_QUOTE.search(value)):
                raise _glued(name, value)
            value = value.replace('\\"', '"')
            if name == "extra":
                row["extra"].append(value)
            elif name in ("time", "time_iso"):
                self._time(row, value)
            else:
                row[name] = checked_field(name, value)
        if self.fmt.trailing:
            self._tail(row, groups[-1])
        if "hostport" in row:
            row["vhost"] = row.pop("hostport")
        return row

    def _time(self, row: dict, text: str) -> None:
        try:
            row["event_time"], row["utc_offset"] = parse_time(text)
        except BadTimestamp as exc:
            raise Reject("bad_timestamp", str(exc)) from None
        row["tz_missing"] = row["utc_offset"] is None

    def _tail(self, row: dict, tail: str) -> None:
        for n, m in enumerate(_TAIL_FIELD.finditer(tail or "")):
            quoted, bare = m.groups()
            if bare is not None and _SECOND_TIME.search(bare):
                raise _glued("trailing", tail)
            if n == 0 and quoted is not None and "xff" not in row:
                row["xff"] = quoted.replace('\\"', '"')
            else:
                row["extra"].append(bare if bare is not None else quoted.replace('\\"', '"'))

    def _no_match(self, line: str) -> Reject:
        m = self.prefix.match(line) if self.prefix else None
        if m and len(line) - m.end() <= 2:
            return Reject(
                "truncated",
                f"line ends right after its timestamp, the rest is missing: {quote(line)}",
            )
        return Reject("no_match", f"line does not fit format {self.fmt.name!r}: {quote(line)}")


def _glued(name: str, value: str) -> Reject:
    return Reject("glued_lines", f"the {name} field holds a second timestamp, two lines "
                  f"run together: {quote(value)}")


def checked_field(name: str, value: str) -> str:
    """The raw value of a field, or Reject when it cannot be what the field holds."""
    if name in ("ident", "user") and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]  # some clients make the server log `""` for an empty name
    # isdigit() alone takes other scripts' digits ("١٢٣"), which no integer cast reads.
    digits = value.isascii() and value.isdigit()
    if name == "status" and not (value == "-" or (len(value) == 3 and digits)):
        raise Reject("bad_status", f"status {quote(value)} is not a 3-digit code or '-'")
    if name == "bytes" and not (value == "-" or digits):
        raise Reject("bad_bytes", f"byte count {quote(value)} is not a number or '-'")
    if name == "port" and not (value == "-" or digits):
        raise Reject("bad_port", f"port {quote(value)} is not a number or '-'")
    return value


def _time_prefix(fmt: LogFormat) -> re.Pattern | None:
    """Pattern of the line up to its timestamp, to tell a cut-off line from a foreign one."""
    pieces = [r"^[ \t]*"]
    for token in fmt.tokens:
        if token.name is None:
            pieces.append(lenient_literal(token.text))
        elif token.name == "time":
            pieces.append(r"[^\]]*\]")
            return re.compile("".join(pieces))
        elif token.name == "time_iso":
            pieces.append(r"\S+")
            return re.compile("".join(pieces))
        else:
            pieces.append(r".*?" if token.name == "user" else r"\S+")
    return None
