"""Draw a `Chart` as inline SVG: no script, no font or file fetched, readable anywhere.

Every column segment and bar carries its exact number twice: in a `<title>` that
browsers show on hover, and in `data-value` for whoever reads the page's markup.
"""

from __future__ import annotations

import math
from html import escape

from logstack_dagster.report.charts import BARS, Chart

WIDTH = 960
FONT = "font-family: system-ui, -apple-system, 'Segoe UI', sans-serif"
INK, MUTED, RULE = "#1a202c", "#4a5568", "#e2e8f0"


def render_svg(chart: Chart) -> str:
    """The chart as one `<svg>` element."""
    if chart.empty:
        return _frame(chart, 60, [_text(WIDTH / 2, 34, chart.empty_text,
                                        anchor="middle", color=MUTED)])
    return _bars(chart) if chart.kind == BARS else _columns(chart)


def nice_ticks(peak: int, count: int = 5) -> list[int]:
    """Round tick values from 0 to at least `peak`: steps of 1, 2 or 5 times a power of 10."""
    if peak <= 0:
        return [0, 1]
    raw = peak / count
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return list(range(0, math.ceil(peak / step) * step + 1, step))


def _columns(chart: Chart) -> str:
    left, right, top, bottom, height = 64, 16, 40, 48, 300
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    ticks = nice_ticks(max(chart.totals))
    scale = plot_h / ticks[-1]
    slot = plot_w / len(chart.labels)
    width = max(1.0, slot * 0.8)
    parts = _legend(chart, left, 18)

    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{RULE}"/>')
        parts.append(_text(left - 8, y + 4, f"{tick:,}", anchor="end", size=11, color=MUTED))

    for i, label in enumerate(chart.labels):
        x = left + i * slot + (slot - width) / 2
        base = top + plot_h
        for series in chart.series:
            value = series.values[i]
            if value <= 0:
                continue
            h = value * scale
            base -= h
            parts.append(
                f'<rect class="column" x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" '
                f'height="{h:.1f}" fill="{series.color}" data-label="{escape(label)}" '
                f'data-series="{escape(series.name)}" data-value="{value}">'
                f"<title>{escape(label)} UTC · {escape(series.name)}: {value:,}</title></rect>")

    every = math.ceil(len(chart.labels) / 10)
    for i in range(0, len(chart.labels), every):
        x = left + (i + 0.5) * slot
        day, hour = chart.labels[i][5:10], chart.labels[i][11:]
        parts.append(_text(x, height - bottom + 16, hour, anchor="middle", size=11))
        parts.append(_text(x, height - bottom + 30, day, anchor="middle", size=11,
                           color=MUTED))
    return _frame(chart, height, parts)


def _bars(chart: Chart) -> str:
    label_w, value_w, row, top = 340, 90, 24, 8
    values = chart.series[0].values
    peak = max(values)
    bar_w = WIDTH - label_w - value_w
    height = top * 2 + row * len(values)
    color = chart.series[0].color
    parts = []
    for i, (label, value) in enumerate(zip(chart.labels, values)):
        y = top + i * row
        length = max(1.0, value / peak * bar_w) if value else 0.0
        shown = label if len(label) <= 50 else label[:49] + "…"
        parts.append(f"<g><title>{escape(label)}: {value:,}</title>"
                     + _text(label_w - 10, y + 16, shown, anchor="end", size=12)
                     + f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{length:.1f}" '
                     f'height="{row - 8}" fill="{color}" data-label="{escape(label)}" '
                     f'data-value="{value}"/>'
                     + _text(label_w + length + 6, y + 16, f"{value:,}", size=12)
                     + "</g>")
    return _frame(chart, height, parts)


def _legend(chart: Chart, x: float, y: float) -> list[str]:
    parts = []
    for series in chart.series:
        text = f"{series.name} {sum(series.values):,}"
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" '
                     f'fill="{series.color}"/>')
        parts.append(_text(x + 18, y, text, size=12))
        x += 36 + 7.5 * len(text)
    return parts


def _frame(chart: Chart, height: int, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="svg-{chart.key}" '
            f'viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
            f'aria-label="{escape(chart.title)}" style="{FONT}">'
            + "".join(parts) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 13,
          color: str = INK) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{color}">{escape(text)}</text>')
