"""Timestamps: vectorised for the strict layouts, one at a time for the lenient path.

Everything is converted to UTC; the offset is kept as it was logged. A timestamp without an
offset is read as UTC and flagged `tz_missing`.
"""

import re
from datetime import datetime, timedelta, timezone

import numpy as np
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
    ok): event_time is null where ok is False (month name, day of month or time of day not
    real), so the caller can hand those lines to the lenient path.
    """
    if isinstance(values, tuple):
        values, start, offset = values
        offset = pc.utf8_slice_codeunits(offset, 0, 5)
    else:
        start, offset = 0, pc.utf8_slice_codeunits(values, 21, 26)
    # A log has far fewer distinct seconds and offsets than lines: read each one once.
    stamps = _encode(pc.utf8_slice_codeunits(values, start, start + 20))
    zones = _encode(offset)
    local_s, local_ok = _clf_local_seconds(stamps.dictionary)
    shift, zone_ok = _zone_seconds(zones.dictionary)
    at, zone_at = _codes(stamps), _codes(zones)
    ok = local_ok[at] & zone_ok[zone_at]
    utc_us = (local_s[at] - shift[zone_at]) * 1_000_000
    event_time = pa.array(utc_us, pa.int64(), mask=~ok).cast(UTC_US)
    return event_time, offset, pa.array(ok)


def _encode(values) -> pa.DictionaryArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.dictionary_encode(values)


def _codes(encoded: pa.DictionaryArray) -> np.ndarray:
    """Dictionary positions of each value; nulls point one past the end (a refusal)."""
    return pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy()


def _zone_seconds(zones: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Seconds east of UTC of each `+hhmm` text, and whether it is one; one extra refused
    entry at the end for null values."""
    zone = _fixed_width(zones, 0, 5).astype(np.int64)
    digits = zone[:, 1:] - ord("0")
    minutes = digits[:, 2] * 10 + digits[:, 3]
    ok = np.all((digits >= 0) & (digits <= 9), axis=1) & (minutes < 60)
    ok &= (zone[:, 0] == ord("-")) | (zone[:, 0] == ord("+"))
    sign = np.where(zone[:, 0] == ord("-"), -1, 1)
    shift = sign * ((digits[:, 0] * 10 + digits[:, 1]) * 60 + minutes) * 60
    return np.append(shift, 0), np.append(ok, False)


_MONTH_KEYS = np.array([(ord(m[0]) << 16) | (ord(m[1]) << 8) | ord(m[2]) for m in MONTHS])
_MONTH_ORDER = np.argsort(_MONTH_KEYS)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# Digit positions in `dd/Mon/yyyy:HH:MM:SS` and the separators between them.
_DIGITS = [0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19]
_SEPARATORS = {2: "/", 6: "/", 11: ":", 14: ":", 17: ":"}


def _clf_local_seconds(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch of each `dd/Mon/yyyy:HH:MM:SS`, read as if UTC, and whether
    it names a real time, with one extra refused entry at the end for null values. The
    text is read as fixed-width bytes and integer arithmetic, not a strptime per value."""
    chars = _fixed_width(values, 0, 20).astype(np.int64)
    digits = chars[:, _DIGITS] - ord("0")
    ok = np.all((digits >= 0) & (digits <= 9), axis=1)
    for at, sep in _SEPARATORS.items():
        ok &= chars[:, at] == ord(sep)
    key = ((chars[:, 3] | 0x20) << 16) | ((chars[:, 4] | 0x20) << 8) | (chars[:, 5] | 0x20)
    found = np.searchsorted(_MONTH_KEYS[_MONTH_ORDER], key).clip(0, 11)
    month = _MONTH_ORDER[found] + 1
    ok &= _MONTH_KEYS[month - 1] == key

    day = digits[:, 0] * 10 + digits[:, 1]
    year = digits[:, 2] * 1000 + digits[:, 3] * 100 + digits[:, 4] * 10 + digits[:, 5]
    hour, minute = digits[:, 6] * 10 + digits[:, 7], digits[:, 8] * 10 + digits[:, 9]
    second = digits[:, 10] * 10 + digits[:, 11]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[month - 1] + (leap & (month == 2))
    ok &= (day >= 1) & (day <= month_days)
    # Seconds 60 and 61 roll over into the next minute, as strptime's did.
    ok &= (hour < 24) & (minute < 60) & (second < 62)
    seconds = _days_from_civil(year, month, day) * 86_400 + (hour * 60 + minute) * 60 + second
    return np.append(seconds, 0), np.append(ok, False)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (years counted from March, so
    that the leap day comes last)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _fixed_width(values: pa.Array, start: int, width: int) -> np.ndarray:
    """An (n, width) array of the UTF-8 bytes `start` to `start + width` of each string;
    zeros where a string is null or too short (which no check above accepts)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    if n == 0:
        return np.zeros((0, width), np.uint8)
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset:values.offset + n + 1]
    data = values.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    first = offsets[:-1].astype(np.int64) + start
    long_enough = offsets[1:] >= first + width
    if values.null_count:
        long_enough &= values.is_valid().to_numpy(zero_copy_only=False)
    at = np.where(long_enough, first, 0)[:, None] + np.arange(width)
    if len(data) < width:
        data = np.concatenate([data, np.zeros(width, np.uint8)])
    chars = data[np.minimum(at, len(data) - 1)]
    chars[~long_enough] = 0
    return chars


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
    try:
        utc = (local - shift).replace(tzinfo=timezone.utc)
    except OverflowError:
        raise BadTimestamp(f"timestamp {text!r} is outside the years 1 to 9999 in UTC") from None
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
