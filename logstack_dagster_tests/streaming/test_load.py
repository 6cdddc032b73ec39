"""`logstack load`: producing a file and ingesting it at once, against the real broker."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from logstack_dagster.ingest import topic
from logstack_dagster.lake.layout import Lake
from logstack_dagster.sample.generate import write_log
from logstack_dagster.streaming.source import until_offset, write_until
from logstack_dagster_tests.conftest import count_lines, settings_env

pytestmark = pytest.mark.integration

LOGSTACK = str(Path(sys.executable).parent / "logstack")
LINE = b'203.0.113.%d - - [22/Jan/2019:03:56:14 +0330] "GET / HTTP/1.1" 200 5 "-" "x"'


def _run(settings, *args, timeout=300):
    return subprocess.run([LOGSTACK, *args], env=settings_env(settings), capture_output=True,
                          text=True, timeout=timeout)


def _lake_counts(settings) -> tuple[int, int, int]:
    """Rows, quarantined lines, and distinct (partition, offset) pairs over both."""
    lake = Lake.open(settings.lake)
    parts = [f"SELECT partition, \"offset\", {int(table == 'requests')} AS row "
             f"FROM read_parquet('{lake.glob(table)}')"
             for table in ("requests", "quarantine")
             if any((Path(settings.lake) / table).rglob("*.parquet"))]
    rows, records, distinct = duckdb.connect().execute(f"""
        WITH lines AS ({" UNION ALL ".join(parts)})
        SELECT sum(row), count(*), count(DISTINCT (partition, "offset")) FROM lines
    """).fetchone()
    return rows, records - rows, distinct


def test_load_puts_every_line_of_a_real_log_in_the_lake(settings, shared_data):
    log = shared_data / "nasa-jul95-part.log"
    lines = count_lines(log)

    result = _run(settings, "load", str(log))

    assert result.returncode == 0, result.stderr
    rows, quarantined, distinct = _lake_counts(settings)
    assert rows + quarantined == distinct == lines
    assert result.stdout.strip() == (
        f"produced {lines:,} lines to {settings.topic!r}; ingested {lines:,} records: "
        f"{rows:,} rows, {quarantined:,} quarantined, " + result.stdout.split(", ")[-1].strip())


def test_load_as_two_processes_matches_produce_then_flow(settings, tmp_path):
    log = tmp_path / "generated.log"
    write_log(log, 40_000, seed=11)
    separate = replace(settings, home=tmp_path / "separate", topic=settings.topic + "-separate")

    loaded = _run(settings, "load", str(log), "--processes", "2")
    produced = _run(separate, "produce", str(log))
    flowed = _run(separate, "flow")

    assert loaded.returncode == produced.returncode == flowed.returncode == 0, (
        loaded.stderr + produced.stderr + flowed.stderr)
    rows, quarantined, distinct = _lake_counts(settings)
    assert rows + quarantined == distinct == 40_000
    assert (rows, quarantined, distinct) == _lake_counts(separate)


def test_a_producer_that_pauses_cuts_no_batch(settings, tmp_path):
    """The dataflow of a load handed on what it had whenever a poll came back empty, so a
    pause in the input cut a batch where `logstack flow` does not: a line that did not
    parse at the start of the next batch took the hour of the line after it, not before."""
    import os
    import threading
    import time

    early = LINE.replace(b"22/Jan/2019:03:56:14", b"22/Jan/2019:10:00:00")
    late = LINE.replace(b"22/Jan/2019:03:56:14", b"22/Jan/2019:12:00:00")
    pipe = tmp_path / "lines"
    os.mkfifo(pipe)

    def write() -> None:
        with open(pipe, "wb") as out:
            # Runs of 1,000 lines: the producer sends a run once it has it whole.
            out.write(b"".join(early % (i % 250) + b"\n" for i in range(1_000)))
            out.flush()
            time.sleep(3)  # the dataflow polls the topic empty, many times
            out.write(b"not a log line\n" + b"".join(late % (i % 250) + b"\n"
                                                     for i in range(999)))

    single = replace(settings, partitions=1)
    writer = threading.Thread(target=write)
    writer.start()
    loaded = _run(single, "load", str(pipe))
    writer.join(10)

    assert loaded.returncode == 0, loaded.stderr
    hour, = duckdb.connect().execute(
        f"SELECT DISTINCT hour(neighbour_time) FROM read_parquet('"
        f"{Lake.open(settings.lake).glob('quarantine')}')").fetchone()
    assert hour == 6  # the line before it: 10:00 at +0330 is 06:30 UTC (after it: 08:30)
    assert _lake_counts(single) == (1_999, 1, 2_000)


def test_a_failed_dataflow_is_reported_after_producing(settings, tmp_path):
    log = tmp_path / "a.log"
    log.write_text('127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2\n' * 30)
    # A lake that opens (a lake that does not is refused before producing: test_cli.py),
    # but whose manifest folder is a file: the dataflow's first commit fails.
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "_manifest").write_text("")
    env_settings = replace(settings, lake_uri=str(lake))

    result = _run(env_settings, "load", str(log))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "logstack: error: produced 30 lines, but the dataflow failed (exit 1): writing to the "
        f"lake at {lake} failed")
    assert "`logstack flow` ingests what is left" in result.stderr
    # The lines are in the topic all the same, for a later `logstack flow`.
    assert sum(topic.exact_end_offsets(topic.resolve_cluster(settings),
                                       settings.topic).values()) == 30


def test_the_end_offsets_file_is_absent_until_written(tmp_path):
    path = tmp_path / "until.json"
    assert until_offset(path, 0) is None

    write_until(path, {0: 12, 1: 0})

    assert (until_offset(path, 0), until_offset(path, 1), until_offset(path, 7)) == (12, 0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["until.json"]


def test_nothing_parsed_is_said_on_stderr(settings, tmp_path):
    noise = tmp_path / "noise.log"
    noise.write_bytes(b"".join(b"%064x\n" % (n * 7919) for n in range(40)))

    result = _run(settings, "load", str(noise))

    assert result.returncode == 0, result.stderr
    assert "ingested 40 records: 0 rows, 40 quarantined" in result.stdout
    assert "logstack: warning: none of the 40 records parsed" in result.stderr
    assert "logstack requeue --format F" in result.stderr


def test_the_dataflow_of_a_killed_load_ends_with_it(settings, tmp_path):
    import os
    import signal
    import time

    log = tmp_path / "generated.log"
    write_log(log, 400_000, seed=3)
    load = subprocess.Popen([LOGSTACK, "load", str(log)], env=settings_env(settings),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    flow = None
    deadline = time.monotonic() + 60
    while flow is None and time.monotonic() < deadline and load.poll() is None:
        children = Path(f"/proc/{load.pid}/task/{load.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        flow = int(pids[0]) if pids else None
        time.sleep(0.05)
    assert flow is not None, "the load never started its dataflow"
    time.sleep(1.0)

    os.kill(load.pid, signal.SIGKILL)
    load.wait()

    # The dataflow goes too, so the topic is not left locked, and a plain run finishes.
    deadline = time.monotonic() + 30
    while not _gone(flow) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(flow), "the dataflow outlived its load"
    finish = _run(settings, "flow")
    assert finish.returncode == 0, finish.stderr
    in_topic = sum(topic.exact_end_offsets(topic.resolve_cluster(settings),
                                           settings.topic).values())
    rows, quarantined, distinct = _lake_counts(settings)
    assert rows + quarantined == distinct == in_topic > 0


def _gone(pid: int) -> bool:
    """Whether process `pid` has ended (exited, or a zombie waiting for its new parent)."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_a_two_process_flow_reads_the_topic_given_as_a_flag(settings, shared_data):
    log = shared_data / "nasa-jul95-part.log"
    assert _run(settings, "produce", str(log)).returncode == 0
    elsewhere = {**settings_env(settings), "KAFKA_TOPIC": "not-this-one"}

    result = subprocess.run([LOGSTACK, "flow", "-p", "2", "--topic", settings.topic],
                            env=elsewhere, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    rows, quarantined, distinct = _lake_counts(settings)
    assert rows + quarantined == distinct == count_lines(log)


def test_load_into_a_topic_made_again_is_refused_before_producing(settings, tmp_path):
    from confluent_kafka.admin import AdminClient

    log = tmp_path / "generated.log"
    write_log(log, 2_000, seed=12)
    assert _run(settings, "load", str(log)).returncode == 0
    cluster = topic.resolve_cluster(settings)
    admin = AdminClient(cluster.librdkafka_config())
    for done in admin.delete_topics([settings.topic]).values():
        done.result()

    again = _run(settings, "load", str(log))

    assert again.returncode == 1
    assert "Traceback" not in again.stderr
    assert "deleted and made again" in again.stderr
    # Refused before producing: the remade topic is empty, the lake as it was.
    assert sum(topic.exact_end_offsets(cluster, settings.topic).values()) == 0
    assert _lake_counts(settings)[2] == 2_000


def test_load_ends_when_a_partition_ends_with_a_transaction_marker(settings, tmp_path):
    """A committed transaction leaves a marker at the end of each partition it wrote; the
    load waited for ever to read a record at the marker's offset."""
    from confluent_kafka import Producer

    cluster = topic.resolve_cluster(settings)
    topic.ensure_topic(cluster, settings.topic, 2)
    producer = Producer(cluster.librdkafka_config(**{"transactional.id": settings.topic}))
    producer.init_transactions(15)
    producer.begin_transaction()
    for n in range(10):
        producer.produce(settings.topic, LINE % n, partition=n % 2)
    producer.commit_transaction(15)
    del producer  # its coordinator connection would outlive the test's broker
    log = tmp_path / "one.log"
    log.write_bytes(LINE % 10 + b"\n")  # to partition 0: partition 1 ends with its marker

    loaded = _run(settings, "load", str(log), timeout=120)

    assert loaded.returncode == 0, loaded.stderr
    assert _lake_counts(settings)[2] == 11
