"""The command line: answers on stdout, one clear line on stderr for every user mistake."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from logstack_dagster_tests.conftest import count_lines

LOGSTACK = str(Path(sys.executable).parent / "logstack")


def _run(*args, env=None, stdin=None, timeout=120):
    import os

    return subprocess.run(
        [LOGSTACK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(result, *expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # One line, or argparse's usage line followed by its one error line.
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("usage:")), lines
    assert "error:" in lines[-1]
    for text in expected:
        assert text in result.stderr


def _flag_error(result, flag, *expected):
    """argparse's usage (of as many lines as the command's flags need), then one error line
    naming `flag`."""
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    *usage, last = [line for line in result.stderr.splitlines() if line.strip()]
    assert usage[0].startswith("usage:") and all(u.startswith(" ") for u in usage[1:]), usage
    assert f"error: argument {flag}" in last
    for text in expected:
        assert text in last


def test_bad_flag_value_names_the_flag():
    _one_line_error(_run("generate", "--lines", "many"), "--lines", "many")


def test_unknown_command_is_a_usage_error():
    _one_line_error(_run("frobnicate"), "frobnicate")


def test_unknown_flag_before_the_command_is_named():
    result = _run("--bogus", "flow")
    _one_line_error(result, "unrecognized arguments: --bogus")
    assert result.returncode == 2


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.log"
    _one_line_error(_run("parse", str(missing)), str(missing))
    _one_line_error(_run("demo", "--log", str(missing)), "--log", str(missing))
    _one_line_error(_run("load", str(missing)), str(missing))


def test_unreachable_broker_is_named_with_its_address(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("x\n")
    result = _run(
        "produce",
        str(log),
        env={"KAFKA_BROKERS": "127.0.0.1:9", "LOGSTACK_HOME": str(tmp_path)},
        timeout=60,
    )
    _one_line_error(result, "127.0.0.1:9")


def test_no_broker_at_all_says_how_to_get_one(tmp_path):
    result = _run("flow", env={"KAFKA_BROKERS": "", "LOGSTACK_HOME": str(tmp_path)})
    _one_line_error(result, "KAFKA_BROKERS", "logstack broker start")


def test_bad_format_is_named():
    _one_line_error(_run("parse", "--format", "%Q nonsense", stdin="x\n"), "--format")


def test_bad_setting_is_named(tmp_path):
    result = _run("flow", env={"KAFKA_PARTITIONS": "zero", "LOGSTACK_HOME": str(tmp_path)})
    _one_line_error(result, "KAFKA_PARTITIONS", "zero")


@pytest.mark.parametrize("name", ["", ".", "..", "../../escape", "a b", "t/x", "x" * 250])
def test_a_topic_name_kafka_would_refuse_is_refused_before_any_folder_is_made(tmp_path, name):
    """The name is a folder of the manifest and the recovery store: `../x` wrote outside."""
    for command in (["flow"], ["produce", "-"], ["load", "-"]):
        flag = _run(*command, "--topic", name, env={"LOGSTACK_HOME": str(tmp_path)},
                    stdin="")
        _flag_error(flag, "--topic", "is not a Kafka topic name")
    setting = _run("flow", env={"KAFKA_TOPIC": name, "LOGSTACK_HOME": str(tmp_path)})
    if name:  # an empty KAFKA_TOPIC is unset: the default topic
        _one_line_error(setting, "KAFKA_TOPIC", "is not a Kafka topic name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["nan", "-5", "inf", "soon", "1e15"])
def test_seconds_flags_take_a_finite_count_of_seconds(value):
    _flag_error(_run("flow", "--broker-timeout", value), "--broker-timeout", value)
    _flag_error(_run("flow", "--commit-seconds", value), "--commit-seconds", value)


@pytest.mark.parametrize("flag, value", [("--epoch-seconds", "0"), ("--epoch-seconds", "nan"),
                                         ("--commit-seconds", "-1"),
                                         ("--progress-seconds", "inf"),
                                         ("--broker-timeout", "soon")])
def test_the_dataflow_module_checks_its_seconds_too(flag, value):
    """What Dagster starts (`python -m logstack_dagster.streaming.run`) took any number."""
    result = subprocess.run([sys.executable, "-m", "logstack_dagster.streaming.run", flag,
                             value], capture_output=True, text=True, timeout=120)
    _flag_error(result, flag, value)


def test_a_bad_first_hour_setting_is_named(tmp_path):
    result = _run("flow", env={"LOGSTACK_FIRST_HOUR": "garbage", "LOGSTACK_HOME": str(tmp_path)})
    _one_line_error(result, "LOGSTACK_FIRST_HOUR", "garbage")


def test_a_lake_uri_without_a_bucket_is_named(tmp_path):
    result = _run("query", "SELECT 1", env={"LOGSTACK_LAKE": "s3://",
                                            "LOGSTACK_HOME": str(tmp_path)})
    _one_line_error(result, "cannot open the lake at s3://", "names no bucket")


@pytest.mark.parametrize("setting, value, named", [
    ("GEOIP_CITY_DB", "/nonexistent/GeoLite2-City.mmdb", "database not found"),
    ("GEOIP_ASN_DB", "/etc/hostname", "not a MaxMind database"),
    ("LOGSTACK_FORMAT", "nosuch", "unknown log format 'nosuch'"),
])
def test_a_bad_dataflow_setting_is_named_before_anything_is_produced(
        tmp_path, broker_address, setting, value, named):
    log = tmp_path / "a.log"
    log.write_text('127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2\n')
    env = {setting: value, "KAFKA_BROKERS": broker_address, "KAFKA_TOPIC": tmp_path.name,
           "LOGSTACK_HOME": str(tmp_path / "home")}
    for command in (["flow"], ["load", str(log)]):
        _one_line_error(_run(*command, env=env), f"{setting}: ", named, value)
    from logstack_dagster.ingest.topic import Cluster, topic_metadata

    # `load` refused before it made the topic or produced a line.
    assert topic_metadata(Cluster(broker_address, {}), tmp_path.name)[1] == 0


@pytest.mark.parametrize("lake, named", [("s3://", "names no bucket"),
                                         ("ftp://127.0.0.1/x", "ftp"),
                                         ("a-file", "not writable")])
def test_load_refuses_a_lake_it_cannot_open_before_producing(tmp_path, broker_address, lake,
                                                             named):
    """Lines produced before the dataflow found the lake unusable stayed in the topic, and a
    second `load` after fixing the setting counted them twice."""
    log = tmp_path / "a.log"
    log.write_text('127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2\n')
    if lake == "a-file":  # a path that opens, where no folder can be made
        lake = str(log)
    env = {"LOGSTACK_LAKE": lake, "KAFKA_BROKERS": broker_address, "KAFKA_TOPIC": tmp_path.name,
           "LOGSTACK_HOME": str(tmp_path / "home")}
    _one_line_error(_run("load", str(log), env=env), "the lake at", named,
                    "nothing was produced")
    from logstack_dagster.ingest.topic import Cluster, topic_metadata

    assert topic_metadata(Cluster(broker_address, {}), tmp_path.name)[1] == 0


def test_a_named_pipe_is_read_once(tmp_path, broker_address):
    """The file check opened the pipe too: the writer's lines went to that open, and
    producing waited for ever on the second."""
    import os
    import threading

    pipe = tmp_path / "lines"
    os.mkfifo(pipe)
    line = '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2\n'
    writer = threading.Thread(target=lambda: pipe.write_text(line * 3))
    writer.start()
    result = _run("produce", str(pipe), "--brokers", broker_address, "--topic", tmp_path.name,
                  timeout=60)
    writer.join(5)
    assert result.returncode == 0, result.stderr
    assert "produced 3 lines" in result.stdout


def test_an_input_that_fails_mid_read_is_one_line(tmp_path, broker_address):
    # Reading a process's own memory from address 0 fails with EIO on Linux.
    env = {"KAFKA_BROKERS": broker_address, "KAFKA_TOPIC": tmp_path.name,
           "LOGSTACK_HOME": str(tmp_path / "home")}
    _one_line_error(_run("produce", "/proc/self/mem", env=env), "input/output error",
                    "after line 0", "the 0 lines before were produced")
    _one_line_error(_run("parse", "/proc/self/mem", env=env), "input/output error")


def test_a_home_under_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    _one_line_error(_run("broker", "start", env={"LOGSTACK_HOME": str(home)}),
                    "not a directory", str(home))


def test_a_fresh_demo_after_a_killed_one_counts_from_an_empty_topic(tmp_path):
    """A killed demo leaves its embedded broker running, its topic holding the lines: the
    next demo produced them again and counted both."""
    env = {"LOGSTACK_HOME": str(tmp_path / "home"), "KAFKA_BROKERS": "", "KAFKA_TOPIC": ""}
    started = _run("broker", "start", env=env)
    address = started.stdout.split(" on ")[1].split()[0]
    try:
        lines = '127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2\n' * 40
        produced = _run("produce", "-", "--brokers", address, "--topic", "requests", stdin=lines)
        assert produced.returncode == 0, produced.stderr

        _one_line_error(_run("demo", "--lines", "2000", env=env),
                        "already holds 40 records", "--fresh")

        result = _run("demo", "--lines", "2000", "--fresh", env=env, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"stopped the embedded broker left running on {address}" in result.stdout
        assert "Every line accounted for: 2,000 produced" in result.stdout
    finally:
        _run("broker", "stop", env=env)


def test_parse_prints_one_json_object_per_line(shared_data):
    path = shared_data / "odd-fields.log"
    result = _run("parse", str(path))
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == count_lines(path)
    assert all("status_code" in o or "error" in o for o in objects)
    first = objects[0]
    assert first["client"] == "83.149.9.216"
    assert first["event_time"] == "2015-02-24T23:13:42Z"


def test_parse_reports_rejected_lines_with_their_number():
    text = (
        '203.0.113.9 - - [22/Jan/2019:03:56:14 +0330] "GET / HTTP/1.1" 200 5 "-" "x"\n'
        "not a log line at all\n"
    )
    result = _run("parse", "--format", "combined", stdin=text)
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first["status_code"] == 200
    assert second["line_number"] == 2
    assert second["raw"] == "not a log line at all"
    assert second["error"]


@pytest.mark.integration
def test_broker_commands_start_report_and_stop(tmp_path):
    env = {"LOGSTACK_HOME": str(tmp_path)}
    assert _run("broker", "status", env=env).returncode == 1
    started = _run("broker", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "127.0.0.1:" in started.stdout
        assert _run("broker", "status", env=env).returncode == 0
    finally:
        assert _run("broker", "stop", env=env).returncode == 0
    assert "not running" in _run("broker", "status", env=env).stdout


def test_generate_writes_the_lines_asked_for(tmp_path):
    out = tmp_path / "sample.log"
    result = _run("generate", "--lines", "2000", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert count_lines(out) == 2000


def test_a_reader_that_goes_away_ends_the_output_quietly():
    result = subprocess.run(f"{LOGSTACK} generate --lines 200000 | head -1", shell=True,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1
    assert result.stderr == ""


def test_more_workers_than_one_machine_runs_are_refused(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("x\n")
    env = {"LOGSTACK_HOME": str(tmp_path), "KAFKA_BROKERS": "127.0.0.1:9"}
    for command in (["load", str(log)], ["flow"]):
        result = _run(*command, "--processes", "2", "--workers", "40", env=env)
        _one_line_error(result, "--processes x --workers is 2 x 40 = 80 workers; at most 64")
