"""`--png` writes every chart as a valid, non-empty PNG."""

from PIL import Image

from logstack_dagster.report.charts import build_charts
from logstack_dagster.report.filters import ReportFilter
from logstack_dagster.report.run import load_answers, write_png

from .conftest import HOUR_A, HOUR_B


def test_every_chart_is_a_png(lake_settings, tmp_path):
    answers = load_answers(lake_settings)
    paths = write_png(answers, tmp_path / "charts")

    assert [p.stem for p in paths] == [c.key for c in build_charts(answers)]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
            assert width >= 800 and height >= 200
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10, path.name


def test_an_empty_range_still_draws(lake_settings, tmp_path):
    answers = load_answers(lake_settings, ReportFilter(start=HOUR_A, end=HOUR_B,
                                                       vhost="www.example.com",
                                                       audience="bots"))

    paths = write_png(answers, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths)
