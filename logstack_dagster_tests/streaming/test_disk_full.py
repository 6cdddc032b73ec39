"""A lake on a full disk: the run fails naming the path, and the next run loses nothing.

The full disk is a real one: a tmpfs of 512 KiB mounted for the test, so the test needs
the right to mount (root, as in CI's container) and skips without it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.sample.generate import write_log
from logstack_dagster_tests.conftest import settings_env
from logstack_dagster_tests.streaming.test_faults import _lake_counts

pytestmark = pytest.mark.integration

FLOW = [sys.executable, "-m", "logstack_dagster.streaming.run", "--epoch-seconds", "1",
        "--commit-seconds", "0"]


def _mount(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A folder on a 512 KiB tmpfs, unmounted after the test."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = _mount(["-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_is_named_and_the_next_run_resumes(settings, cluster, tmp_path, small_disk):
    log = tmp_path / "sample.log"
    write_log(log, 60_000, seed=5)
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, 2)
    full = replace(settings, lake_uri=str(small_disk / "lake"))

    failed = subprocess.run(FLOW, env=settings_env(full), capture_output=True, text=True,
                            timeout=300)

    assert failed.returncode == 1, failed.stderr[-2000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert str(small_disk / "lake") in last
    assert "No space left on device" in last
    assert "Traceback" not in failed.stderr
    records, distinct, _ = _lake_counts(full)
    assert records == distinct < produced

    # Room again: the next run takes what is committed and adds the rest, once each.
    assert _mount(["-o", "remount,size=64m", str(small_disk)]).returncode == 0
    resumed = subprocess.run(FLOW, env=settings_env(full), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _lake_counts(full) == (produced, produced, produced)
