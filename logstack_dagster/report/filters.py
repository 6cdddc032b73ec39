"""What a report covers: a range of UTC hours, one virtual host, humans or bots.

Hours are the grain of everything logstack counts, so both ends of a range are whole
hours: `--from` starts at the hour that holds it, `--to` keeps the hour that holds it
(a bare date keeps its whole day). Without an offset a time is read as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from logstack_dagster.errors import LogstackError

HOUR = timedelta(hours=1)
HUMANS = "humans"
BOTS = "bots"


class FilterError(LogstackError):
    """A filter the data cannot answer, or a bound that is not a date or time."""


@dataclass(frozen=True)
class ReportFilter:
    """The rows a report counts. `start` is inclusive, `end` exclusive, both whole UTC hours."""

    start: datetime | None = None
    end: datetime | None = None
    vhost: str | None = None
    audience: str | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start >= self.end:
            raise FilterError(
                f"--from {_hour(self.start)} is after --to {_hour(self.end - HOUR)}: "
                "the range holds no hour")
        if self.audience not in (None, HUMANS, BOTS):
            raise FilterError(f"audience must be {HUMANS!r} or {BOTS!r}, not {self.audience!r}")

    @property
    def needs_lake(self) -> bool:
        """True when the hourly metric tables cannot express this filter."""
        return self.vhost is not None or self.audience is not None

    def hour_sql(self, column: str = "hour") -> str:
        """A SQL condition keeping the hours in range; `column` holds a TIMESTAMPTZ."""
        parts = []
        if self.start:
            parts.append(f"{column} >= {timestamp_sql(self.start)}")
        if self.end:
            parts.append(f"{column} < {timestamp_sql(self.end)}")
        return " AND ".join(parts) or "true"

    def rows_sql(self) -> str:
        """A SQL condition on the lake's `requests` rows for every part of the filter."""
        parts = [self.hour_sql("event_time")]
        if self.vhost is not None:
            parts.append(f"lower(vhost) = {string_sql(self.vhost.lower())}")
        if self.audience == HUMANS:
            # As in the metric tables: people are browsers ua-parser recognised, not the
            # empty or unknown agents that are often scripts (see enrichment.useragent).
            parts.append("ua_class = 'human'")
        elif self.audience == BOTS:
            parts.append("is_bot")
        return " AND ".join(parts)

    def to_json(self) -> dict:
        return {"from": _iso(self.start), "to": _iso(self.end), "vhost": self.vhost,
                "audience": self.audience}

    def describe(self) -> str:
        """The filter in words, for report headings; empty when nothing is filtered."""
        words = []
        if self.start or self.end:
            last = self.end - HOUR if self.end else None
            words.append(f"hours {_hour(self.start) or 'first'} to {_hour(last) or 'last'}")
        if self.vhost is not None:
            words.append(f"vhost {self.vhost}")
        if self.audience:
            words.append(f"{self.audience} only")
        return ", ".join(words)


def parse_from(text: str) -> datetime:
    """The first hour of a `--from` bound: the hour that holds the given time."""
    value, _ = _parse(text)
    return _in_range(text, lambda: floor_hour(value))


def parse_to(text: str) -> datetime:
    """The exclusive end of a `--to` bound: the hour after the one holding the time,
    or the midnight after a bare date."""
    value, is_date = _parse(text)
    return _in_range(text, lambda: value + timedelta(days=1) if is_date
                     else floor_hour(value) + HOUR)


def _in_range(text: str, bound) -> datetime:
    """`bound()`, or a ValueError when it falls outside the years 1 to 9999 in UTC."""
    try:
        return bound()
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def bound_type(flag: str):
    """The argparse `type` of `--to`, or of a flag that starts at an hour (`--from`,
    `compact --before`); a bad value becomes a usage error."""
    import argparse

    parse = parse_to if flag == "to" else parse_from

    def bound(text: str) -> datetime:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    bound.__name__ = f"--{flag} time"
    return bound


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def timestamp_sql(value: datetime) -> str:
    """A TIMESTAMPTZ literal; the value is formatted here, never taken from the user."""
    return f"TIMESTAMPTZ '{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'"


def string_sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _parse(text: str) -> tuple[datetime, bool]:
    cleaned = text.strip()
    try:
        if len(cleaned) == 10:
            day = date.fromisoformat(cleaned)
            return datetime(day.year, day.month, day.day, tzinfo=UTC), True
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"expected an ISO date or time such as 2015-05-17 or 2015-05-17T10:00 "
            f"(UTC unless an offset is given), not {text!r}") from None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)), False


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _hour(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:00") if value else None
