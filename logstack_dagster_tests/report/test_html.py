"""The HTML report opens in headless Chromium without any network, and its charts draw.

Chromium only ever opens the report's own file:// page here; its background services
(updates, sync, safe browsing) are turned off.
"""

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from logstack_dagster.report.charts import BLUE, ORANGE

from .conftest import HOUR_A, HOUR_B

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
LOGSTACK = str(Path(sys.executable).parent / "logstack")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH; on Debian: apt-get install -y chromium")


class _Marks(HTMLParser):
    """The chart titles and every drawn column and bar of a page."""

    def __init__(self):
        super().__init__()
        self.titles, self.marks, self._in_h2 = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in_h2 = tag == "h2"
        if tag == "rect" and attrs.get("class") in ("column", "bar"):
            self.marks.append(attrs)

    def handle_data(self, data):
        if self._in_h2:
            self.titles.append(data)
            self._in_h2 = False


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report_page(lake_settings, tmp_path_factory) -> Path:
    """The report as `logstack report --html` writes it."""
    page = tmp_path_factory.mktemp("html") / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGSTACK_", "KAFKA_"))}
    result = subprocess.run(
        [LOGSTACK, "report", "--html", str(page), "--no-owners"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**env, "LOGSTACK_HOME": str(lake_settings.home)})
    assert result.returncode == 0, result.stderr
    assert f"wrote {page}" in result.stdout
    return page


def test_the_page_needs_nothing_from_the_network(report_page):
    html = report_page.read_text()

    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html.replace("https://www.google.com/", "").replace(
        "https://www.example.com/", "")


def test_chromium_renders_the_titles_and_numbers(report_page, lake_sql, tmp_path):
    result = _chromium(tmp_path / "profile", "--dump-dom", report_page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    page = _Marks()
    page.feed(result.stdout)

    assert page.titles == [
        "Requests per hour: humans and bots", "Status codes per hour", "Top countries",
        "Top paths", "Top referrers", "Paths answered 404",
        "Non-200 offenders: status code, client and owner network",
        "Parse failures per hour (quarantined lines)", "Top bots"]
    drawn = {(m["data-series"], m["data-label"]): int(m["data-value"])
             for m in page.marks if "data-series" in m}
    for hour in (HOUR_A, HOUR_B):
        label = f"{hour:%Y-%m-%d %H:00}"
        humans, bots = lake_sql.execute("""
            SELECT count(*) FILTER (WHERE ua_class = 'human'), count(*) FILTER (WHERE is_bot)
            FROM rows WHERE date_trunc('hour', event_time) = $1""", [hour]).fetchone()
        assert (drawn[("humans", label)], drawn[("bots", label)]) == (humans, bots)
    bars = {m["data-label"]: int(m["data-value"]) for m in page.marks
            if m.get("class") == "bar"}
    assert bars["/missing"] == 2 and bars["Googlebot (search_engine)"] == 2
    assert "11 requests" not in result.stdout  # the figure is formatted on its own
    assert ">11</b><span>requests</span>" in result.stdout.replace("\n", "")


def test_the_screenshot_shows_the_charts(report_page, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                       "--hide-scrollbars", report_page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]

    assert shot.stat().st_size > 20_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = image.convert("RGB")
        colors = pixels.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50
    found = {rgb for _, rgb in colors}
    for color in (BLUE, ORANGE):
        assert tuple(int(color[i:i + 2], 16) for i in (1, 3, 5)) in found, color
