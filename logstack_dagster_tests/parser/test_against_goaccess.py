"""logstack accepts at least the lines GoAccess accepts, on every real log, counted live.

GoAccess runs with the format matching each file and its most lenient flags
(`--no-ip-validation` lets host-name clients through); its JSON report says how many
requests it found valid. The parser must accept as many, and account for every line.
"""

import json
import shutil
import subprocess

import pytest

from logstack_dagster.parser import parse_lines
from logstack_dagster_tests.parser.conftest import DATA, needs_data, read_records

# file -> (GoAccess --log-format, logstack format)
FILES = {
    "first1000.log": ("COMBINED", "combined"),
    "elastic-apache-2015.log": ("COMBINED", "combined"),
    "spam-bots-2015.log": ("COMBINED", "combined"),
    "nasa-jul95-part.log": ("COMMON", "common"),
    "twiki-2004-common-crlf.log": ("COMMON", "common"),
    "dash-request.log": ("COMBINED", "combined"),
    "odd-fields.log": ("COMBINED", "combined"),
    "vhost-port-duration.log": (
        "VCOMBINED", '%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'),
}

needs_goaccess = pytest.mark.skipif(
    shutil.which("goaccess") is None,
    reason="GoAccess is not installed; on Debian: apt-get install -y goaccess")


def goaccess_valid(path, log_format, tmp_path) -> tuple[int, int]:
    """(valid, total) requests of GoAccess's JSON report on `path`."""
    report = tmp_path / "goaccess.json"
    subprocess.run(
        ["goaccess", str(path), f"--log-format={log_format}", "--no-ip-validation",
         "--no-global-config", "--no-progress", "-o", str(report)],
        check=True, capture_output=True, timeout=120)
    general = json.loads(report.read_text())["general"]
    return general["valid_requests"], general["total_requests"]


@needs_data
@needs_goaccess
@pytest.mark.parametrize("name", sorted(FILES))
def test_accepts_at_least_what_goaccess_accepts(name, tmp_path):
    goaccess_format, ours = FILES[name]
    valid, total = goaccess_valid(DATA / name, goaccess_format, tmp_path)
    records = read_records(DATA / name)

    result = parse_lines(records, ours)

    assert total == len(records)
    assert result.accepted + result.rejected == len(records)
    assert result.accepted >= valid, (name, result.accepted, valid)
