"""`logstack report --html`: one self-contained page of charts and their numbers.

Styles and charts are inline and there is no script, so the file opens the same from a
mail attachment, an air-gapped laptop or a CI artefact store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from logstack_dagster.report.answers import SOURCE_WORDS, Answers, left_out_lines
from logstack_dagster.report.charts import TIME, Chart, build_charts
from logstack_dagster.report.svg import render_svg

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1a202c;
       margin: 0 auto; max-width: 1000px; padding: 24px; background: #f7fafc; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 8px; }
.sub, .note { color: #4a5568; margin: 0 0 8px; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 24px; }
.figure { background: #fff; border: 1px solid #e2e8f0; border-radius: 6px;
          padding: 10px 16px; min-width: 150px; }
.figure b { display: block; font-size: 22px; }
.figure span { color: #4a5568; font-size: 13px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 6px;
          padding: 16px; margin: 0 0 20px; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
th, td { padding: 2px 10px; text-align: left; border-bottom: 1px solid #edf2f7; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
summary { cursor: pointer; color: #2b6cb0; margin-top: 6px; }
"""


def render_html(answers: Answers, generated: datetime | None = None) -> str:
    """The whole report as one HTML document."""
    generated = generated or datetime.now(UTC)
    charts = build_charts(answers)
    where = answers.report_filter.describe() or "every hour, every request"
    share = answers.quarantined / max(answers.requests + answers.quarantined, 1)
    figures = [
        (f"{answers.requests:,}", "requests"),
        (f"{answers.quarantined:,}", f"parse failures ({share:.2%})"),
        (f"{answers.hours:,}", "hours"),
        (_bytes(answers.bytes_sent), "sent"),
    ]
    body = [
        "<header>",
        "<h1>Access-log report</h1>",
        (f'<p class="sub">{escape(_span(answers))} · {escape(where)} · counted from '
         f"{escape(SOURCE_WORDS.get(answers.source, answers.source))} · generated "
         f"{generated.astimezone(UTC):%Y-%m-%d %H:%M} UTC</p>"),
        *(f'<p class="note">{escape(line)}</p>' for line in left_out_lines(answers.left_out)),
        '<div class="figures">',
        *(f'<div class="figure"><b>{escape(value)}</b><span>{escape(label)}</span></div>'
          for value, label in figures),
        "</div>",
        "</header>",
        *(_section(chart, answers) for chart in charts),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Access-log report: {escape(_span(answers))}</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _section(chart: Chart, answers: Answers) -> str:
    parts = [f'<section id="{chart.key}">', f"<h2>{escape(chart.title)}</h2>"]
    if chart.note:
        parts.append(f'<p class="note">{escape(chart.note)}</p>')
    parts.append(render_svg(chart))
    if chart.key == "status_codes_per_hour" and answers.status_codes:
        codes = " · ".join(f"{r['status_code'] if r['status_code'] is not None else 'none'}: "
                           f"{r['requests']:,}" for r in answers.status_codes)
        parts.append(f'<p class="note">All hours: {escape(codes)}</p>')
    parts.append(_numbers(chart))
    parts.append("</section>")
    return "\n".join(parts)


def _numbers(chart: Chart) -> str:
    """The chart's numbers as a table, folded away under the picture."""
    first = "hour (UTC)" if chart.kind == TIME else "name"
    names = [s.name for s in chart.series]
    head = f"<th>{first}</th>" + "".join(f'<th class="n">{escape(n)}</th>' for n in names)
    rows = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(f'<td class="n">{s.values[i]:,}</td>' for s in chart.series) + "</tr>"
        for i, label in enumerate(chart.labels)
    )
    return (f'<details><summary>The numbers</summary><table class="numbers">'
            f"<tr>{head}</tr>{rows}</table></details>")


def _span(answers: Answers) -> str:
    if answers.first_hour is None:
        return "no hours"
    first = answers.first_hour.astimezone(UTC)
    last = answers.last_hour.astimezone(UTC)
    return f"{first:%Y-%m-%d %H:00} to {last:%Y-%m-%d %H:59} UTC"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{count} B"
