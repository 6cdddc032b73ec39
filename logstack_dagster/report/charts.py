"""The report's charts as data: what each one shows, before any drawing.

The HTML report draws them as inline SVG (`svg.py`) and `--png` with matplotlib
(`png.py`). Both draw the same `Chart`s, built here from the `Answers` that `--json`
prints, so a picture never shows a number the JSON does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from logstack_dagster.report.answers import Answers

TIME = "time"
"""One column per hour, oldest first; several series are stacked."""
BARS = "bars"
"""One horizontal bar per label, largest first; a single series."""

BLUE, ORANGE, GREY, PURPLE_GREY = "#2b6cb0", "#dd6b20", "#a0aec0", "#b794f4"
STATUS_COLORS = {"1xx": "#805ad5", "2xx": "#38a169", "3xx": "#3182ce", "4xx": ORANGE,
                 "5xx": "#e53e3e", "none": GREY}
FAILURE_RED = "#c53030"


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[int, ...]
    color: str


@dataclass(frozen=True)
class Chart:
    """One chart: `key` names its PNG file and its HTML anchor."""

    key: str
    title: str
    kind: str
    labels: tuple[str, ...]
    series: tuple[Series, ...]
    note: str = ""
    empty_text: str = "No requests in this range."

    @property
    def totals(self) -> tuple[int, ...]:
        """The sum of the series at each label: a column's height, a bar's length."""
        return tuple(sum(s.values[i] for s in self.series) for i in range(len(self.labels)))

    @property
    def empty(self) -> bool:
        return not any(self.totals)


def build_charts(answers: Answers) -> list[Chart]:
    """Every chart of the report, in reading order; top bots only when the lake knows."""
    charts = [
        _requests_per_hour(answers),
        _status_per_hour(answers),
        _bars("countries", "Top countries", answers.countries,
              lambda r: r["country"] + (f" · {r['country_name']}" if r["country_name"] else "")),
        _bars("top_paths", "Top paths", answers.top_paths, lambda r: r["path"],
              note="Sums of each hour's 100 most requested paths."),
        _bars("top_referrers", "Top referrers", answers.top_referrers,
              lambda r: r["referrer"],
              note="Sums of each hour's 100 most frequent referrers."),
        _bars("not_found_paths", "Paths answered 404", answers.not_found_paths,
              lambda r: r["path"]),
        _bars("offenders", "Non-200 offenders: status code, client and owner network",
              answers.offenders,
              lambda r: f"{r['status_code']} · {r['client']} · {r.get('owner', 'unknown')}",
              color=ORANGE),
        Chart("parse_failures_per_hour", "Parse failures per hour (quarantined lines)", TIME,
              _hours(answers),
              (Series("quarantined", tuple(r["quarantined"] for r in answers.traffic),
                      FAILURE_RED),),
              note=("Not filtered by vhost or bot: unparsed lines have neither."
                    if answers.report_filter.needs_lake else ""),
              empty_text="No parse failures in this range."),
    ]
    if answers.bots is not None:
        charts.append(_bars(
            "bots", "Top bots", answers.bots,
            lambda r: r["bot_name"] + (f" ({r['bot_category']})" if r["bot_category"] else ""),
            color=ORANGE))
    return charts


def hour_label(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%d %H:00")


def _hours(answers: Answers) -> tuple[str, ...]:
    return tuple(hour_label(r["hour"]) for r in answers.traffic)


def _requests_per_hour(answers: Answers) -> Chart:
    traffic = answers.traffic
    if not answers.audience:
        return Chart("requests_per_hour", "Requests per hour", TIME, _hours(answers),
                     (Series("requests", tuple(r["requests"] for r in traffic), BLUE),))
    series = [Series("humans", tuple(r["humans"] for r in traffic), BLUE),
              Series("bots", tuple(r["bots"] for r in traffic), ORANGE)]
    for key, name, color in (("other", "empty or unknown agent", PURPLE_GREY),
                             ("unclassified", "not classified", GREY)):
        values = tuple(r[key] for r in traffic)
        if any(values):
            series.append(Series(name, values, color))
    return Chart("requests_per_hour", "Requests per hour: humans and bots", TIME,
                 _hours(answers), tuple(series),
                 note="Humans are browsers the user-agent parser recognised; bots are "
                      "named crawlers and scripts.")


def _status_per_hour(answers: Answers) -> Chart:
    hours = [r["hour"] for r in answers.traffic]
    counts: dict[str, dict[datetime, int]] = {}
    for row in answers.status_by_hour:
        counts.setdefault(row["status_class"], {})[row["hour"]] = row["requests"]
    series = tuple(
        Series(name, tuple(by_hour.get(h, 0) for h in hours), STATUS_COLORS.get(name, GREY))
        for name, by_hour in sorted(counts.items())
    )
    return Chart("status_codes_per_hour", "Status codes per hour", TIME, _hours(answers),
                 series)


def _bars(key: str, title: str, rows: list[dict], label, color: str = BLUE,
          note: str = "") -> Chart:
    return Chart(key, title, BARS, tuple(str(label(r) or "-") for r in rows),
                 (Series("requests", tuple(r["requests"] for r in rows), color),), note)
