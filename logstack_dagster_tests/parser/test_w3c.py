"""W3C extended logs: the `#Fields:` header maps columns; directives are not data."""

from logstack_dagster.parser import parse_lines, resolve_format

W3C_LOG = [
    b"#Software: Microsoft Internet Information Services 10.0\r\n",
    b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip "
    b"cs(User-Agent) sc-status sc-bytes time-taken\r\n",
    b"2024-03-01 10:00:01 203.0.113.1 GET /default.htm a=1 443 192.0.2.10 "
    b"Mozilla/5.0+(Windows) 200 512 15\r\n",
    b"2024-03-01 10:00:02 203.0.113.1 GET /missing - 443 192.0.2.11 - 404 0 3\r\n",
    b"2024-03-01 10:00:03 too few fields\r\n",
]


def test_w3c_is_detected_and_directives_are_listed_apart():
    result = parse_lines(W3C_LOG)
    reasons = dict(
        zip(result.rejects["line_index"].to_pylist(), result.rejects["reason"].to_pylist())
    )

    assert result.format_name == "w3c"
    assert reasons == {0: "w3c_directive", 1: "w3c_directive", 4: "no_match"}
    assert result.rows["line_index"].to_pylist() == [2, 3]


def test_w3c_fields_map_to_columns():
    rows = parse_lines(W3C_LOG).rows.to_pylist()

    assert rows[0]["event_time"].isoformat() == "2024-03-01T10:00:01+00:00"
    assert (rows[0]["path"], rows[0]["query"]) == ("/default.htm", "a=1")
    assert rows[0]["server_port"] == 443
    assert rows[0]["user_agent"] == "Mozilla/5.0 (Windows)"
    assert rows[0]["extra_fields"] == ["203.0.113.1", "15"]
    assert (rows[1]["status_code"], rows[1]["user_agent"], rows[1]["query"]) == (404, None, None)


def test_a_fields_line_as_spec_parses_headerless_batches():
    fmt = resolve_format("#Fields: date time c-ip cs-method cs-uri-stem sc-status")
    rows = parse_lines([b"2024-03-01 23:59:59 192.0.2.1 GET /x 301"], fmt).rows.to_pylist()

    assert (rows[0]["client"], rows[0]["method"]) == ("192.0.2.1", "GET")
    assert rows[0]["status_code"] == 301


def test_the_detected_header_is_returned_for_later_batches():
    first = parse_lines(W3C_LOG[:3])
    later = parse_lines([W3C_LOG[3]], first.log_format)

    assert first.log_format.w3c_fields[-1] == "time-taken"
    assert later.rows["status_code"].to_pylist() == [404]


def test_a_port_not_logged_is_null_not_a_refusal():
    unlogged = W3C_LOG[3].replace(b" 443 ", b" - ")
    result = parse_lines([*W3C_LOG[:2], unlogged])
    assert result.rows["server_port"].to_pylist() == [None]
    assert result.rows["path"].to_pylist() == ["/missing"]
