"""Producing a file reports lines per second and the time left as it goes."""

from __future__ import annotations

import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.ingest.topic import Progress


def test_time_left_follows_the_rate_so_far():
    halfway = Progress(lines=50_000, bytes=5_000_000, seconds=10.0, total_bytes=10_000_000)

    assert halfway.lines_per_second == 5_000
    assert halfway.share == 0.5
    assert halfway.seconds_left == pytest.approx(10.0)
    assert halfway.describe() == "50,000 lines  5,000 lines/s  50%  about 10 s left"
    assert Progress(10, 100, 2.0).describe() == "10 lines  5 lines/s"
    assert Progress(10, 100, 2.0, 100, finished=True).describe() == (
        "10 lines  5 lines/s  done in 2.0 s")
    assert Progress(1, 100_000, 600.0, 1_000_000).describe().endswith("10%  about 1 h 30 min left")


@pytest.mark.integration
def test_producing_a_file_reports_as_it_goes(settings, cluster, tmp_path):
    log = tmp_path / "lines.log"
    log.write_bytes(b"".join(b"line %06d\n" % n for n in range(60_000)))
    topic.ensure_topic(cluster, settings.topic, 1)
    seen: list[Progress] = []

    produced = topic.produce_file(cluster, settings.topic, log, 1, seen.append, interval=0)

    assert produced == 60_000
    assert [p.lines for p in seen] == [10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 60_000]
    assert [p.finished for p in seen] == [False] * 6 + [True]
    assert seen[-1].bytes == seen[-1].total_bytes == log.stat().st_size
    assert all(p.seconds_left is not None for p in seen[:-1])
