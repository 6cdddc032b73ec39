"""Every real log of the shared folder: all lines accounted for, nearly all accepted."""

import pytest

from logstack_dagster.parser import parse_lines
from logstack_dagster_tests.parser.conftest import DATA, needs_data, read_records

# file -> (format the README gives, fewest lines that must be accepted)
FILES = {
    "elastic-apache-2015.log": ("combined", 5000),
    "first1000.log": ("combined", 1001),
    "spam-bots-2015.log": ("combined", 3456),
    "nasa-jul95-part.log": ("common", 13376),
    "twiki-2004-common-crlf.log": ("common", 1536),
    "vhost-port-duration.log": (
        '%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D',
        2,
    ),
    "dash-request.log": ("combined", 1),
    "odd-fields.log": ("combined", 3),
    "fixtures/matomo-common.log": ("common", 1),
    "fixtures/matomo-common_vhost.log": ("vhost_common", 1),
    "fixtures/matomo-common_complete.log": ("vhost_combined", 1),
    "fixtures/matomo-icecast2.log": ("combined", 1),
    "fixtures/matomo-ncsa_extended.log": ("combined", 1),
    "fixtures/matomo-ovh.log": ("combined", 1),
    "fixtures/matomo-static_ignores.log": ("vhost_combined", 4),
    "fixtures/awstats-testnginx-vhost-dash-request.log": ("nginx_vhost", 1),
    "fixtures/awstats-testtime5-iso8601.log": ("combined_iso", 2),
}


@needs_data
def test_every_shared_log_is_listed():
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*.log")}
    assert on_disk == set(FILES)


@needs_data
@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("how", ["named", "auto"])
def test_shared_log_lines_are_accounted_for(name, how):
    fmt, minimum = FILES[name]
    records = read_records(DATA / name)
    result = parse_lines(records, fmt if how == "named" else None)

    assert result.accepted + result.rejected == len(records)
    assert result.accepted >= minimum, result.rejects.to_pylist()[:3]
    indexes = result.rows["line_index"].to_pylist() + result.rejects["line_index"].to_pylist()
    assert sorted(indexes) == list(range(len(records)))


@needs_data
def test_first1000_keeps_persian_paths_decoded_and_the_offset():
    result = parse_lines(read_records(DATA / "first1000.log"), "combined")
    first = result.rows.slice(0, 1).to_pylist()[0]

    assert first["utc_offset"] == "+0330"
    assert first["event_time"].isoformat() == "2019-01-22T00:26:14+00:00"
    assert "مگاپیکسل" in first["path_decoded"]
    assert "%D9%85" in first["path"]
    xffs = [x for x in result.rows["forwarded_for"].to_pylist() if x]
    assert len(xffs) == 13


@needs_data
def test_last_line_of_first1000_with_raw_quotes_in_its_url_is_kept():
    result = parse_lines(read_records(DATA / "first1000.log"), "combined")
    last = result.rows.to_pylist()[-1]

    assert last["line_index"] == 1000
    assert last["path"] == "/rapidGrails/jsonList"
    assert last["status_code"] == 200
    assert last["bytes_sent"] == 1600
    assert last["protocol"] == "HTTP/1.1"


@needs_data
def test_vhost_port_duration_keeps_host_port_and_duration():
    fmt = FILES["vhost-port-duration.log"][0]
    rows = parse_lines(read_records(DATA / "vhost-port-duration.log"), fmt).rows.to_pylist()

    assert [r["vhost"] for r in rows] == ["localhost", "localhost"]
    assert [r["server_port"] for r in rows] == [443, 443]
    assert [r["extra_fields"] for r in rows] == [["116075"], ["156302"]]
    assert rows[0]["user"] == "jsmith" and rows[0]["protocol"] == "HTTP/2.0"


@needs_data
def test_twiki_crlf_lines_lose_their_carriage_return():
    rows = parse_lines(read_records(DATA / "twiki-2004-common-crlf.log"), "common").rows

    assert not any(b and "\r" in str(b) for b in rows["bytes_sent"].to_pylist())
    assert rows["utc_offset"].unique().to_pylist() == ["-0800"]
    assert 408 in rows["status_code"].to_pylist()


@needs_data
def test_iso8601_fixture_keeps_microseconds_and_offsets():
    rows = parse_lines(read_records(DATA / "fixtures/awstats-testtime5-iso8601.log")).rows

    times = [t.isoformat() for t in rows["event_time"].to_pylist()]
    assert times == ["2001-01-01T23:55:10.147454+00:00", "2001-01-01T21:56:15+00:00"]
    assert rows["utc_offset"].to_pylist() == ["Z", "+02:00"]
