"""parse_lines on awkward batches: the accounting promise and each kind of reject."""

from logstack_dagster.parser import PARSED_SCHEMA, REJECT_SCHEMA, parse_lines

GOOD = b'192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.0" 200 2326 "-" "ua"'


def _reasons(result) -> dict[int, str]:
    return dict(zip(result.rejects["line_index"].to_pylist(), result.rejects["reason"].to_pylist()))


def test_schemas_are_exact():
    result = parse_lines([GOOD])

    assert result.rows.schema == PARSED_SCHEMA
    assert result.rejects.schema == REJECT_SCHEMA
    assert result.format_name == "combined"


def test_empty_batch_gives_empty_tables():
    result = parse_lines([], "combined")

    assert result.rows.num_rows == 0 and result.rejects.num_rows == 0
    assert result.rows.schema == PARSED_SCHEMA


def test_line_endings_blank_and_garbage_lines_are_accounted_for():
    lines = [GOOD + b"\r\n", b"", b"\r\n", b"   \t", b"not a log line\n", GOOD]
    result = parse_lines(lines, "combined")

    assert result.rows["line_index"].to_pylist() == [0, 5]
    assert _reasons(result) == {1: "empty", 2: "empty", 3: "empty", 4: "no_match"}
    assert "not a log line" in result.rejects["message"].to_pylist()[-1]


def test_invalid_utf8_survives_as_upper_case_escapes():
    line = GOOD.replace(b'"ua"', b'"caf\xe9 \xff"')
    row = parse_lines([line], "combined").rows.to_pylist()[0]

    assert row["user_agent"] == "caf\\xE9 \\xFF"


def test_nul_bytes_do_not_break_the_batch():
    result = parse_lines([GOOD.replace(b"/a", b"/a\x00b"), b"\x00\x00", GOOD], "combined")

    assert result.rows["line_index"].to_pylist() == [0, 2]
    assert result.rows["path"].to_pylist()[0] == "/a\x00b"
    assert _reasons(result) == {1: "no_match"}


def test_a_one_mebibyte_line_is_rejected_as_too_long_not_parsed():
    huge = GOOD.replace(b"/a", b"/" + b"a" * (1 << 20))
    result = parse_lines([huge, GOOD], "combined")

    assert _reasons(result) == {0: "too_long"}
    assert "over the limit" in result.rejects["message"].to_pylist()[0]
    assert result.rows["line_index"].to_pylist() == [1]


def test_bad_timestamp_status_and_bytes_have_their_own_reasons():
    lines = [
        GOOD.replace(b"10/Oct", b"10/Okt"),
        GOOD.replace(b"10/Oct", b"31/Feb"),
        GOOD.replace(b" 200 ", b" 2x0 "),
        GOOD.replace(b" 2326 ", b" lots "),
    ]
    result = parse_lines(lines, "combined")

    assert _reasons(result) == {
        0: "bad_timestamp",
        1: "bad_timestamp",
        2: "bad_status",
        3: "bad_bytes",
    }
    assert "'10/Okt/2000:13:55:36 -0700'" in result.rejects["message"].to_pylist()[0]


def test_times_outside_the_years_1_to_9999_in_utc_are_refused_in_every_path():
    """Arrow holds them, Python's datetime does not: every write of their batch failed."""
    iso = '$remote_addr - - [$time_iso8601] "$request" $status $body_bytes_sent'
    lines = [
        GOOD.replace(b"10/Oct/2000:13:55:36 -0700", b"01/Jan/0001:00:00:00 +1400"),  # year 0
        GOOD.replace(b"10/Oct/2000:13:55:36 -0700", b"31/Dec/9999:23:30:00 -0100"),  # 10000
        GOOD.replace(b"10/Oct/2000:13:55:36 -0700", b"1/Jan/0001:00:00:00 +1400"),  # lenient
        GOOD.replace(b"10/Oct/2000:13:55:36 -0700", b"01/Jan/0001:00:00:00 -0100"),  # year 1
        GOOD,
    ]
    result = parse_lines(lines, "combined")
    assert _reasons(result) == {0: "bad_timestamp", 1: "bad_timestamp", 2: "bad_timestamp"}
    assert all("outside the years 1 to 9999" in m for m in result.rejects["message"].to_pylist())
    assert [t.year for t in result.rows["event_time"].to_pylist()] == [1, 2000]

    iso_lines = [b'192.0.2.1 - - [0001-01-01T00:00:00+14:00] "GET / HTTP/1.1" 200 5',
                 b'192.0.2.1 - - [2019-12-02T17:00:00+00:00] "GET / HTTP/1.1" 200 5']
    result = parse_lines(iso_lines, iso)
    assert _reasons(result) == {0: "bad_timestamp"}
    assert result.rows["line_index"].to_pylist() == [1]


def test_numbers_no_column_holds_are_refused_not_the_batch():
    """A byte count past int64 or a port past 65535 once failed its whole batch: the
    partition could then never be ingested."""
    vhost = b"www.example.com:%s " + GOOD
    lines = [
        GOOD.replace(b" 2326 ", b" 99999999999999999999999 "),
        GOOD.replace(b" 2326 ", b" 9223372036854775808 "),  # 2**63
        GOOD.replace(b" 2326 ", b" 9007199254740993 "),  # 2**53 + 1: refused (MAX_BYTES)
        GOOD.replace(b" 2326 ", b" 9007199254740992 "),  # 2**53: kept
        GOOD.replace(b" 2326 ", b" 00000000000000000000000000042 "),  # kept: 42
        GOOD.replace(b" 2326 ", " \u0661\u0662 ".encode()),  # Arabic-Indic digits
        GOOD.replace(b" 200 ", " \u0662\u0660\u0660 ".encode()),
        GOOD,
    ]
    result = parse_lines(lines, "combined")
    assert _reasons(result) == {0: "bad_bytes", 1: "bad_bytes", 2: "bad_bytes",
                                5: "bad_bytes", 6: "bad_status"}
    assert "over 9,007,199,254,740,992" in result.rejects["message"].to_pylist()[0]
    assert result.rows["bytes_sent"].to_pylist() == [2**53, 42, 2326]

    result = parse_lines([vhost % b"99999999999999999999999", vhost % b"65536",
                          vhost % b"65535"], "vhost_combined")
    assert _reasons(result) == {0: "bad_port", 1: "bad_port"}
    assert result.rows["server_port"].to_pylist() == [65535]

    json_line = ('{"time":"2020-10-10T10:00:00+00:00","remote_addr":"192.0.2.1",'
                 '"request":"GET / HTTP/1.1","status":200,"body_bytes_sent":%s}')
    result = parse_lines([(json_line % v).encode() for v in ("1e23", "99999999999999999999999",
                                                            "7")], "json")
    assert _reasons(result) == {0: "bad_bytes", 1: "bad_bytes"}
    assert result.rows["bytes_sent"].to_pylist() == [7]


def test_two_lines_run_together_are_refused_not_read_as_one():
    """A lost newline once made one row of two lines: the second line's time, request and
    status under the first one's client, the rest in its user name or path."""
    second = b'198.51.100.7 - - [11/Oct/2000:08:00:00 +0000] "POST /b HTTP/1.1" 404 99 "-" "ub"'
    glued = [GOOD + second, GOOD + b" " + second, GOOD + b"\0\0" + second]
    for fmt in ("combined", "common", None):
        result = parse_lines([*glued, second], fmt)
        assert _reasons(result) == {0: "glued_lines", 1: "glued_lines", 2: "glued_lines"}, fmt
        assert result.rows["line_index"].to_pylist() == [3]
        assert "second timestamp" in result.rejects["message"].to_pylist()[0]

    # Formats whose time is ISO, unbracketed, and a first line cut inside its request.
    iso = b'192.0.2.1 - - 2000-10-10T13:55:36+00:00 "GET /a HTTP/1.1" 200 5 "-" "ua"'
    result = parse_lines([iso + iso.replace(b"/a", b"/b"), iso], "combined_iso")
    assert _reasons(result) == {0: "glued_lines"}
    result = parse_lines([GOOD.split(b" HTTP/1.0")[0] + second], "combined")
    assert _reasons(result) == {0: "glued_lines"}

    # A time inside a quoted field is the field's own text, not a second line, escaped
    # quotes (which send a line through the slow path) or not.
    agents = [b"probe [10/Oct/2000:13:55:36 -0700]", b'probe \\"x\\" [10/Oct/2000:13:55:36 -0700]']
    quoted = [GOOD.replace(b'"ua"', b'"' + agent + b'"') for agent in agents]
    assert parse_lines(quoted, "combined").rows["user_agent"].to_pylist() == [
        "probe [10/Oct/2000:13:55:36 -0700]", 'probe "x" [10/Oct/2000:13:55:36 -0700]']


def test_a_mapped_ipv4_address_keeps_its_dotted_quad():
    lines = [GOOD.replace(b"192.0.2.1", client)
             for client in (b"::ffff:192.0.2.1", b"[::FFFF:192.0.2.1]", b"2001:DB8::1")]
    rows = parse_lines(lines, "combined").rows
    assert rows["ip"].to_pylist() == ["::ffff:192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"]


def test_tabs_lower_case_months_and_odd_offsets_are_read():
    lines = [
        GOOD.replace(b"- - [", b"-\t-\t["),
        GOOD.replace(b"Oct", b"oct").replace(b"-0700", b"+0545"),
        GOOD.replace(b"-0700", b"-09:30"),
    ]
    rows = parse_lines(lines, "combined").rows.to_pylist()

    assert [r["event_time"].isoformat() for r in rows] == [
        "2000-10-10T20:55:36+00:00",
        "2000-10-10T08:10:36+00:00",
        "2000-10-10T23:25:36+00:00",
    ]
    assert [r["utc_offset"] for r in rows] == ["-0700", "+0545", "-09:30"]


def test_connect_absolute_uri_and_tls_garbage_requests():
    lines = [
        GOOD.replace(b"GET /a?b=1 HTTP/1.0", b"CONNECT example.com:443 HTTP/1.1"),
        GOOD.replace(b"/a?b=1", b"http://example.com/x?y=%41"),
        GOOD.replace(b"GET /a?b=1 HTTP/1.0", b"\\x16\\x03\\x01\\x02\\x00"),
    ]
    rows = parse_lines(lines, "combined").rows.to_pylist()

    assert (rows[0]["method"], rows[0]["target"], rows[0]["path"]) == (
        "CONNECT",
        "example.com:443",
        "example.com:443",
    )
    assert (rows[1]["path"], rows[1]["query"]) == ("http://example.com/x", "y=%41")
    assert rows[2]["malformed_request"] and rows[2]["request"] == "\\x16\\x03\\x01\\x02\\x00"
    assert rows[2]["method"] is None


def test_stream_mixing_lines_with_and_without_trailing_fields():
    lines = [GOOD, GOOD + b' "203.0.113.9"', GOOD + b' "-" 0.012', GOOD + b" 0/14"]
    rows = parse_lines(lines, "combined").rows.to_pylist()

    assert [r["forwarded_for"] for r in rows] == [None, "203.0.113.9", None, None]
    assert [r["extra_fields"] for r in rows] == [[], [], ["0.012"], ["0/14"]]


def test_missing_offset_is_read_as_utc_and_flagged():
    row = parse_lines([GOOD.replace(b" -0700]", b"]")], "combined").rows.to_pylist()[0]

    assert row["tz_missing"] is True and row["utc_offset"] is None
    assert row["event_time"].isoformat() == "2000-10-10T13:55:36+00:00"


def test_percent_decoding_keeps_sequences_that_are_not_utf8():
    line = GOOD.replace(b"/a?b=1", b"/caf%C3%A9/%E0%zz")
    row = parse_lines([line], "combined").rows.to_pylist()[0]

    assert row["path_decoded"] == "/café/%E0%zz"
    assert row["path"] == "/caf%C3%A9/%E0%zz"


def test_auto_detection_does_not_need_real_requests_at_the_head():
    idle = b'192.0.2.31 - - [03/May/2019:01:20:30 +0200] "-" 408 3294 "-" "-"'
    result = parse_lines([idle] * 500 + [GOOD] * 3)

    assert result.format_name == "combined"
    assert result.accepted == 503
    assert result.rows["request"].to_pylist()[0] is None
    assert result.rows["malformed_request"].to_pylist()[0] is False


def test_line_cut_inside_its_user_agent_is_kept_and_flagged():
    cut = GOOD.replace(b'"ua"', b'"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) Chrome/32.')
    rows = parse_lines([cut, GOOD], "combined").rows.to_pylist()

    assert [r["line_truncated"] for r in rows] == [True, False]
    assert rows[0]["user_agent"] == "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) Chrome/32."
    assert rows[0]["status_code"] == 200


def test_a_line_cut_short_in_the_sample_does_not_make_a_combined_log_common():
    cut = GOOD.split(b' "-" "ua"')[0]  # ends after the size: a common line
    lines = [GOOD] * 150 + [cut] + [GOOD] * 49

    result = parse_lines(lines)

    assert result.format_name == "combined"
    assert result.rows["user_agent"].to_pylist()[0] == "ua"
    assert result.accepted + result.rejected == 200


def test_a_common_log_with_a_few_combined_lines_stays_common():
    common = GOOD.split(b' "-" "ua"')[0]
    assert parse_lines([common] * 190 + [GOOD] * 10).format_name == "common"


def test_a_byte_order_mark_is_no_part_of_the_line():
    result = parse_lines(["\ufeff".encode() + GOOD, GOOD], "combined")
    assert result.rows["ip"].to_pylist() == ["192.0.2.1", "192.0.2.1"]
