import io

import pytest

from logstack_dagster.errors import LogstackError
from logstack_dagster.ingest import topic
from logstack_dagster_tests.conftest import count_lines


def test_iter_lines_keeps_every_line_as_written():
    data = b"a\r\n\nb\xff\x00c\nlast-without-newline"
    lines = list(topic.iter_lines(io.BytesIO(data)))
    assert lines == [b"a\r", b"", b"b\xff\x00c", b"last-without-newline"]


def test_iter_lines_across_read_chunks(monkeypatch):
    monkeypatch.setattr(topic, "READ_CHUNK", 7)
    data = b"".join(f"line {i}\n".encode() for i in range(50))
    assert list(topic.iter_lines(io.BytesIO(data))) == [f"line {i}".encode() for i in range(50)]


def test_produce_puts_every_line_of_a_real_log_in_the_topic(cluster, settings, shared_data):
    path = shared_data / "first1000.log"
    partitions = topic.ensure_topic(cluster, settings.topic, 3)

    produced = topic.produce_file(cluster, settings.topic, path, partitions)

    assert partitions == 3
    assert produced == count_lines(path) == 1001
    cluster_id, count = topic.topic_metadata(cluster, settings.topic)
    assert count == 3 and cluster_id.startswith("logstack-")
    # Tansu's metadata end offsets may lag the true end (see end_offsets), never pass it.
    ends = topic.end_offsets(cluster, settings.topic)
    assert set(ends) == {0, 1, 2}
    assert 0 < sum(ends.values()) <= 1001


def test_ensure_topic_keeps_an_existing_topic(cluster, settings):
    assert topic.ensure_topic(cluster, settings.topic, 2) == 2
    assert topic.ensure_topic(cluster, settings.topic, 5) == 2


def test_unreachable_broker_is_named():
    import pytest

    with pytest.raises(topic.BrokerUnreachable, match="127.0.0.1:9"):
        topic.wait_reachable(topic.Cluster("127.0.0.1:9", {}), timeout=0.5)


def test_a_line_too_large_for_one_record_stops_producing_and_is_named(cluster, settings,
                                                                     tmp_path):
    log = tmp_path / "huge.log"
    before = [b"line %d" % n for n in range(2_500)]
    log.write_bytes(b"\n".join([*before, b"x" * (topic.RECORD_BYTES + 1), b"after"]) + b"\n")
    partitions = topic.ensure_topic(cluster, settings.topic, 2)

    with pytest.raises(LogstackError) as caught:
        topic.produce_file(cluster, settings.topic, log, partitions)

    assert str(caught.value) == (
        "line 2,501 is 1,000,001 bytes, over the 1,000,000 bytes one record may hold; "
        "the 2,500 lines before it were produced, it and the rest were not")
    assert sum(topic.exact_end_offsets(cluster, settings.topic).values()) == 2_500


def test_ctrl_c_while_producing_says_exactly_which_lines_reached_the_topic(cluster, settings):
    import signal
    import subprocess
    import sys
    import time

    from logstack_dagster_tests.conftest import settings_env

    lines = [b"line %d" % n for n in range(7_500)]
    producing = subprocess.Popen([sys.executable, "-m", "logstack_dagster.cli", "produce", "-"],
                                 stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=settings_env(settings))
    try:
        # Five runs of lines go out; the producer then waits for a sixth on its input.
        producing.stdin.write(b"\n".join(lines[:5 * topic.SPREAD]) + b"\n")
        producing.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ends = topic.exact_end_offsets(cluster, settings.topic, timeout=2)
            if sum(ends.values()) >= 5 * topic.SPREAD:
                break
            time.sleep(0.2)
        producing.send_signal(signal.SIGINT)
        time.sleep(0.5)
        # Ctrl-C waits for the run under way, then stops: the rest is never read.
        producing.stdin.write(b"\n".join(lines[5 * topic.SPREAD:]) + b"\n")
        producing.stdin.flush()
        err = producing.communicate(timeout=60)[1].decode()
    finally:
        producing.kill()

    assert producing.returncode == 130
    assert err.strip().splitlines()[-1] == (
        f"logstack: interrupted: the first 6,000 lines reached topic {settings.topic!r}, the "
        "rest did not; producing them again would count them twice: go on from line 6,001")
    assert sum(topic.exact_end_offsets(cluster, settings.topic).values()) == 6_000
