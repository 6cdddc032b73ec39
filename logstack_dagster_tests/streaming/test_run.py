"""The dataflow as its own process against the real broker."""

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.lake.duck import register_views
from logstack_dagster.lake.layout import Lake
from logstack_dagster_tests.conftest import count_lines, settings_env

pytestmark = pytest.mark.integration


def _flow(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "logstack_dagster.streaming.run", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_flow_catches_up_then_exits_and_resumes_where_it_stopped(settings, cluster, shared_data):
    path = shared_data / "first1000.log"
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, path, 2)

    first = _flow(settings)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.splitlines()[-1])
    assert summary["records"] == produced == count_lines(path)

    # Nothing new: a second run reads nothing; new lines: only those are read.
    second = _flow(settings)
    assert json.loads(second.stdout.splitlines()[-1])["records"] == 0
    more = shared_data / "dash-request.log"
    added = topic.produce_file(cluster, settings.topic, more, 2)
    third = _flow(settings, "--workers", "2")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout.splitlines()[-1])["records"] == added


def test_missing_topic_is_named(settings):
    result = _flow(settings)
    assert result.returncode != 0
    assert settings.topic in result.stderr


def test_a_new_lake_under_the_same_home_gets_every_record(settings, cluster, tmp_path):
    """The recovery store lives in LOGSTACK_HOME, beside the lake; a run into a new lake
    (LOGSTACK_LAKE) resumed from it and wrote nothing, with exit code 0."""
    from dataclasses import replace

    from logstack_dagster.sample.generate import write_log

    log = tmp_path / "sample.log"
    write_log(log, 3_000, seed=7)
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, 2)
    assert json.loads(_flow(settings).stdout.splitlines()[-1])["records"] == produced

    again = _flow(replace(settings, lake_uri=str(tmp_path / "second-lake")))

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["records"] == produced


def _remake(cluster, name: str, partitions: int) -> None:
    """Delete the topic `name` and make it again, empty, as an operator would."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(cluster.librdkafka_config())
    for done in admin.delete_topics([name]).values():
        done.result()
    assert topic.topic_metadata(cluster, name)[1] == 0
    topic.ensure_topic(cluster, name, partitions)


def _ingest_then_remake(settings, cluster, tmp_path, before: tuple[int, int],
                        after: tuple[int, int]) -> None:
    """Ingest `before` = (lines, partitions), then remake the topic with `after`'s
    partitions and produce `after`'s lines into it."""
    from logstack_dagster.sample.generate import write_log

    for name, (lines, partitions) in (("old", before), ("new", after)):
        log = tmp_path / f"{name}.log"
        write_log(log, lines, seed=lines + partitions)
        if name == "old":
            topic.ensure_topic(cluster, settings.topic, partitions)
        else:
            assert _flow(settings).returncode == 0
            _remake(cluster, settings.topic, partitions)
        topic.produce_file(cluster, settings.topic, log, partitions)


def test_a_topic_made_again_under_its_name_is_refused_not_waited_on(settings, cluster,
                                                                    tmp_path):
    """A remade topic's offsets start again at 0: the run used to wait for ever at the old
    topic's end, and records below it would have been taken as already in the lake."""
    _ingest_then_remake(settings, cluster, tmp_path, (3_000, 2), (1_000, 2))

    run = _flow(settings)

    assert run.returncode == 1
    message = run.stderr.strip().splitlines()[-1]
    assert "Traceback" not in run.stderr
    assert f"topic {settings.topic!r} on {settings.brokers}" in message
    assert "deleted and made again" in message
    ends = topic.exact_end_offsets(cluster, settings.topic)
    short = min(p for p in ends if f"partition {p} " in message)
    assert f"ends at offset {ends[short]}," in message

    # The records are still all there, for a topic of a new name.
    assert sum(ends.values()) == 1_000


def test_a_partition_the_topic_no_longer_has_counts_as_remade(settings, cluster, tmp_path):
    _ingest_then_remake(settings, cluster, tmp_path, (4_000, 4), (4_000, 1))

    run = _flow(settings)

    assert run.returncode == 1
    assert "deleted and made again" in run.stderr
    assert "(3 of 4 partitions are short)" in run.stderr
    assert f"partition 1 of topic {settings.topic!r} on {settings.brokers} no longer exists" in (
        run.stderr)


def test_flow_logs_throughput_and_lag_at_a_steady_interval(settings, cluster, tmp_path):
    from logstack_dagster.sample.generate import write_log

    log = tmp_path / "sample.log"
    write_log(log, 200_000, seed=2)
    topic.ensure_topic(cluster, settings.topic, 2)
    produced = topic.produce_file(cluster, settings.topic, log, 2)

    run = _flow(settings, "--progress-seconds", "0.5", "--epoch-seconds", "0.5")

    assert run.returncode == 0, run.stderr
    reports = [line for line in run.stderr.splitlines() if "records/s); lag" in line]
    assert reports, run.stderr[-2000:]
    committed = [int(line.split("committed ")[1].split()[0]) for line in reports]
    assert all(0 <= n <= produced for n in committed)
    assert sum(committed) <= produced


def test_a_resumed_partition_keeps_the_format_it_was_read_with(settings, cluster, tmp_path):
    """New records after a stop are parsed as before, not as their own batch suggests.
    The first run reads one whole batch of combined lines; the second only lines that
    `common` fits best. Read in one run they are parsed alike, so must they be in two."""
    from dataclasses import replace

    from logstack_dagster.streaming.source import POLL_RECORDS

    from logstack_dagster.lake.layout import Lake
    from logstack_dagster.lake.manifest import Manifest

    combined = tmp_path / "combined.log"
    combined.write_bytes(b"".join(
        b'10.0.%d.%d - - [10/Oct/2000:13:%02d:36 -0700] "GET /p%d HTTP/1.0" 200 %d '
        b'"https://example.org/" "Mozilla/5.0"\n' % (n // 250 % 250, n % 250, n % 60, n, n)
        for n in range(POLL_RECORDS)))
    # Lines that end after the size: `common` fits them best, `combined` only leniently.
    common = tmp_path / "common.log"
    common.write_bytes(b"".join(
        b'10.1.%d.%d - - [10/Oct/2000:14:%02d:36 -0700] "GET /q%d HTTP/1.0" 404 %d\n'
        % (n // 250, n % 250, n % 60, n, n) for n in range(3_000)))
    resumed, whole = settings, replace(settings, home=tmp_path / "whole",
                                       topic=settings.topic + "-whole")
    for target in (resumed, whole):
        topic.ensure_topic(cluster, target.topic, 1)

    topic.produce_file(cluster, resumed.topic, combined, 1)
    assert _flow(resumed).returncode == 0
    topic.produce_file(cluster, resumed.topic, common, 1)
    second = _flow(resumed)
    assert second.returncode == 0, second.stderr
    topic.produce_file(cluster, whole.topic, combined, 1)
    topic.produce_file(cluster, whole.topic, common, 1)
    assert _flow(whole).returncode == 0

    def lake_state(target):
        lake = Lake.open(target.lake)
        cluster_id = topic.topic_metadata(cluster, target.topic)[0]
        manifest = Manifest(lake, cluster_id, target.topic)
        commits = list(manifest.commits(0))
        return (sum(c.rows for c in commits), sum(c.quarantined for c in commits),
                manifest.last_formats())

    assert lake_state(resumed) == lake_state(whole)
    assert lake_state(resumed)[2] == {0: "combined"}
    assert sum(lake_state(resumed)[:2]) == POLL_RECORDS + 3_000


def test_ctrl_c_stops_a_following_flow_in_one_line_and_the_next_run_goes_on(settings, cluster,
                                                                             tmp_path):
    import signal
    import threading
    import time

    first, more = tmp_path / "first.log", tmp_path / "more.log"
    for path, start in ((first, 0), (more, 500)):
        path.write_bytes(b"".join(
            b'10.0.0.%d - - [10/Oct/2000:13:55:%02d -0700] "GET /p%d HTTP/1.0" 200 %d\n'
            % (n % 250, n % 60, n, n) for n in range(start, start + 500)))
    topic.ensure_topic(cluster, settings.topic, 1)
    topic.produce_file(cluster, settings.topic, first, 1)

    following = subprocess.Popen([sys.executable, "-m", "logstack_dagster.cli", "flow",
                                  "--follow"], env=settings_env(settings),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(following.stderr), daemon=True)
    reader.start()
    try:
        # The first lines are committed at the end of the first epoch, and published.
        published = Path(settings.lake) / "requests"
        deadline = time.monotonic() + 60
        while not list(published.rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.2)
        following.send_signal(signal.SIGINT)
        following.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        following.kill()

    assert list(published.rglob("*.parquet")), "".join(err)
    assert following.returncode == 130
    assert err[-1].strip() == ("logstack: interrupted: what was committed stays; "
                               "`logstack flow` resumes from there")
    assert not any("Traceback" in line for line in err), "".join(err)

    topic.produce_file(cluster, settings.topic, more, 1)
    rest = _flow(settings)
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout.splitlines()[-1])["records"] == 500


def test_a_second_dataflow_of_the_topic_is_refused_even_with_the_recovery_store_gone(
        settings, cluster, tmp_path):
    """The lock lived in the recovery folder: deleting that folder under a running
    dataflow let a second one in beside it, and 700 records became 1,339 rows."""
    import shutil

    produced = _sample_topic(settings, cluster, tmp_path, seed=11)
    # It goes on: SQLite writes on into the files it holds open.
    with _following(settings) as follower:
        # Out of the way at once (the run writes journal files there), then deleted.
        settings.recovery_dir.rename(tmp_path / "gone")
        shutil.rmtree(tmp_path / "gone", ignore_errors=True)

        second = _flow(settings)

        assert second.returncode == 1, second.stderr
        assert "another dataflow is ingesting this topic" in second.stderr
        assert "Traceback" not in second.stderr
        assert follower.poll() is None
    assert _flow(settings).returncode == 0
    assert _counted(settings) == (produced, produced)


def test_two_homes_sharing_a_local_lake_take_turns(settings, cluster, tmp_path):
    """Each home held only its own lock: two dataflows of one topic wrote one lake at once,
    and both summaries claimed the same records."""
    from dataclasses import replace

    produced = _sample_topic(settings, cluster, tmp_path, seed=12)
    other = replace(settings, home=tmp_path / "other-home", lake_uri=settings.lake)
    with _following(settings):
        second = _flow(other)

        assert second.returncode == 1, second.stderr
        assert "another dataflow is ingesting this topic" in second.stderr
        assert "_locks" in second.stderr
    assert _flow(other).returncode == 0
    assert _counted(settings) == (produced, produced)


def test_a_load_into_a_topic_being_read_is_refused_before_producing(settings, cluster,
                                                                     tmp_path):
    """It produced its lines and then found the lock taken: a second try produced them
    again."""
    produced = _sample_topic(settings, cluster, tmp_path, seed=13)
    with _following(settings):
        loaded = subprocess.run(
            [str(Path(sys.executable).parent / "logstack"), "load", str(tmp_path / "sample.log")],
            env=settings_env(settings), capture_output=True, text=True, timeout=120)

        assert loaded.returncode == 1, loaded.stderr
        assert "another dataflow is ingesting this topic" in loaded.stderr
        assert "nothing was produced" in loaded.stderr
    assert sum(topic.exact_end_offsets(cluster, settings.topic).values()) == produced


def _sample_topic(settings, cluster, tmp_path, seed: int) -> int:
    """A topic of 2 partitions holding a generated log of 2,000 lines; the lines produced."""
    from logstack_dagster.sample.generate import write_log

    log = tmp_path / "sample.log"
    write_log(log, 2_000, seed=seed)
    topic.ensure_topic(cluster, settings.topic, 2)
    return topic.produce_file(cluster, settings.topic, log, 2)


@contextmanager
def _following(settings):
    """A dataflow following the topic, once it is reading (it has opened its recovery
    store and holds the lock); stopped on the way out."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "logstack_dagster.streaming.run", "--follow",
         "--epoch-seconds", "0.5"],
        env=settings_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        for line in follower.stderr:
            if "detected the" in line:
                break
        assert follower.poll() is None
        yield follower
    finally:
        follower.terminate()
        follower.communicate(timeout=60)


def _counted(settings) -> tuple[int, int]:
    """Records in the lake, as rows and quarantined lines, and distinct ones among them."""
    conn = duckdb.connect()
    register_views(conn, Lake.open(settings.lake))
    return conn.execute(
        'SELECT count(*), count(DISTINCT ("partition", "offset")) FROM '
        '(SELECT "partition", "offset" FROM requests UNION ALL '
        'SELECT "partition", "offset" FROM quarantine)').fetchone()
