"""`logstack report --png`: each chart of the report as a PNG file, drawn by matplotlib.

The figures are drawn on matplotlib's Agg canvas directly, without `pyplot`, so nothing
needs a display and no global figure state is left behind.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from logstack_dagster.report.charts import TIME, Chart

log = logging.getLogger(__name__)


def write_pngs(charts: list[Chart], folder: Path, dpi: int = 100) -> list[Path]:
    """Write `<key>.png` for every chart into `folder` (created); return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for chart in charts:
        path = folder / f"{chart.key}.png"
        figure = _draw(chart)
        figure.savefig(path, dpi=dpi)
        paths.append(path)
    log.info("wrote %d charts as PNG to %s", len(paths), folder)
    return paths


def _draw(chart: Chart):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = max(len(chart.labels), 1)
    height = 4.2 if chart.kind == TIME else max(2.4, 1.4 + 0.32 * rows)
    figure = Figure(figsize=(11, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(chart.title, loc="left", fontsize=13, fontweight="bold")
    thousands = FuncFormatter(lambda value, _: f"{value:,.0f}")

    if chart.empty:
        axes.text(0.5, 0.5, chart.empty_text, ha="center", va="center",
                  transform=axes.transAxes, color="#4a5568")
        axes.set_axis_off()
    elif chart.kind == TIME:
        positions = range(len(chart.labels))
        base = [0] * len(chart.labels)
        for series in chart.series:
            axes.bar(positions, series.values, bottom=base, color=series.color, width=0.8,
                     label=f"{series.name} {sum(series.values):,}")
            base = [b + v for b, v in zip(base, series.values)]
        every = math.ceil(len(chart.labels) / 10)
        ticks = list(positions)[::every]
        axes.set_xticks(ticks, [f"{chart.labels[i][11:]}\n{chart.labels[i][5:10]}"
                                for i in ticks], fontsize=9)
        axes.yaxis.set_major_formatter(thousands)
        axes.set_xlabel("hour (UTC)")
        axes.legend(loc="lower right", bbox_to_anchor=(1, 1), frameon=False,
                    ncols=len(chart.series), fontsize=9)
    else:
        values = chart.series[0].values
        labels = [t if len(t) <= 50 else t[:49] + "…" for t in chart.labels]
        bars = axes.barh(range(len(values)), values, color=chart.series[0].color)
        axes.set_yticks(range(len(values)), labels, fontsize=9)
        axes.invert_yaxis()
        axes.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=9)
        axes.xaxis.set_major_formatter(thousands)
        axes.margins(x=0.12)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure
