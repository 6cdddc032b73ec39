"""Timestamps: vectorised for the strict layouts, one at a time for the lenient path.

Everything is converted to UTC; the offset is kept as it was logged. A timestamp without an
offset is read as UTC and flagged `tz_missing`.
"""

import re
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

UTC_US = pa.timestamp("us", tz="UTC")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


class BadTimestamp(ValueError):
    """A timestamp field that does not name a real instant."""


def clf_times(values) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Strictly shaped CLF strings (`dd/Mon/yyyy:HH:MM:SS +hhmm`) to UTC.

    `values` is one string array, or (date-time texts, chars before the date, offset texts)
    when the line was cut at the space inside the timestamp. Returns (event_time, utc_offset,
    ok): event_time is null where ok is False (month name or day of month not real), so the
    caller can hand those lines to the lenient path.
    """
    if isinstance(values, tuple):
        values, start, offset = values
        offset = pc.utf8_slice_codeunits(offset, 0, 5)
    else:
        start, offset = 0, pc.utf8_slice_codeunits(values, 21, 26)
    local = pc.strptime(
        pc.utf8_slice_codeunits(values, start, start + 20), format="%d/%b/%Y:%H:%M:%S",
        unit="us", error_is_null=True,
    )
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(offset, 0, 1), "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(offset, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(offset, 3, 5), pa.int64())
    offset_us = pc.multiply(pc.multiply(pc.add(pc.multiply(hours, 60), minutes), sign), 60_000_000)

    # strptime rolls 31/Feb over into March; a day that changed means the date was not real.
    day = pc.cast(pc.utf8_slice_codeunits(values, start, start + 2), pa.int64())
    ok = pc.and_(pc.equal(pc.day(local), day), pc.less(minutes, 60))
    ok = pc.fill_null(ok, False)
    utc_us = pc.subtract(pc.cast(local, pa.int64()), offset_us)
    event_time = pc.if_else(ok, pc.cast(utc_us, pa.timestamp("us")), None)
    return pc.cast(event_time, UTC_US), offset, ok


def iso_times(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Strictly shaped ISO-8601 strings with an offset or `Z` to UTC; same returns as clf_times."""
    offset = pc.extract_regex(values, r"(?P<o>Z|[+-]\d{2}:?\d{2})$").field("o")
    ok = pc.is_valid(offset)
    try:
        event_time = pc.cast(values, UTC_US)
    except pa.ArrowInvalid:
        # One unreal date fails the whole cast; let the lenient path sort the lines out.
        return pa.nulls(len(values), UTC_US), offset, pa.array([False] * len(values))
    return event_time, offset, ok


_CLF = re.compile(
    r"^\s*(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:\s*(Z|UTC|GMT|[+-]\d{1,2}:?\d{2}))?\s*$"
)
_ISO = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2}))?\s*$"
)


def parse_time(text: str) -> tuple[datetime, str | None]:
    """One CLF or ISO-8601 timestamp to (UTC datetime, offset as logged or None).

    Raises BadTimestamp quoting the text when it is neither or names no real instant.
    """
    m = _CLF.match(text)
    if m:
        day, month_name, year, hh, mm, ss, frac, offset = m.groups()
        month = MONTHS.index(month_name.lower()) + 1 if month_name.lower() in MONTHS else 0
    else:
        m = _ISO.match(text)
        if not m:
            raise BadTimestamp(f"timestamp {text!r} is neither CLF nor ISO-8601")
        year, month, day, hh, mm, ss, frac, offset = m.groups()
        month = int(month)

    try:
        micros = int((frac or "0")[:6].ljust(6, "0"))
        local = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), micros)
        shift = _offset(offset)
    except ValueError as exc:
        raise BadTimestamp(f"timestamp {text!r} is not a real time: {exc}") from None
    utc = (local - shift).replace(tzinfo=timezone.utc)
    return utc, offset


def _offset(text: str | None) -> timedelta:
    if text is None or text in ("Z", "UTC", "GMT"):
        return timedelta(0)
    digits = text[1:].replace(":", "").zfill(4)
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text!r} out of range")
    sign = -1 if text[0] == "-" else 1
    return sign * timedelta(hours=hours, minutes=minutes)
