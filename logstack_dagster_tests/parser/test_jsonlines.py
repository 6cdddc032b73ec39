"""JSON-lines logs of nginx (escape=json), Caddy and Traefik through the default mapping."""

from logstack_dagster.parser import parse_lines

NGINX = (
    b'{"time_iso8601":"2024-05-01T12:00:00+02:00","remote_addr":"192.0.2.1",'
    b'"request":"GET /a?x=1 HTTP/1.1","status":"200","body_bytes_sent":"12",'
    b'"http_referer":"","http_user_agent":"curl/8.0 \\"q\\""}'
)
CADDY = (
    b'{"ts":1714564800.5,"request":{"remote_ip":"2001:db8::1","method":"GET",'
    b'"uri":"/b","proto":"HTTP/2.0","headers":{"User-Agent":["Go-http-client"]}},'
    b'"status":404,"size":0}'
)
TRAEFIK = (
    b'{"ClientHost":"192.0.2.3","RequestMethod":"POST","RequestPath":"/c",'
    b'"RequestProtocol":"HTTP/1.1","DownstreamStatus":201,"DownstreamContentSize":5,'
    b'"StartUTC":"2024-05-01T10:00:00.25Z"}'
)


def test_json_lines_are_detected_and_mapped():
    result = parse_lines([NGINX, CADDY, TRAEFIK, b"{not json", b"[1, 2]"])
    rows = result.rows.to_pylist()

    assert result.format_name == "json"
    assert [r["event_time"].isoformat() for r in rows] == [
        "2024-05-01T10:00:00+00:00",
        "2024-05-01T12:00:00.500000+00:00",
        "2024-05-01T10:00:00.250000+00:00",
    ]
    assert [r["status_code"] for r in rows] == [200, 404, 201]
    assert [r["client"] for r in rows] == ["192.0.2.1", "2001:db8::1", "192.0.2.3"]
    assert rows[0]["user_agent"] == 'curl/8.0 "q"' and rows[0]["referrer"] is None
    assert (rows[0]["path"], rows[0]["query"]) == ("/a", "x=1")
    assert (rows[1]["method"], rows[1]["protocol"], rows[1]["user_agent"]) == (
        "GET",
        "HTTP/2.0",
        "Go-http-client",
    )
    assert result.rejects["reason"].to_pylist() == ["bad_json", "bad_json"]


def test_json_no_column_can_hold_is_refused_alone():
    """Each of these failed its whole batch, and every later run on its partition."""
    huge = NGINX.replace(b'"body_bytes_sent":"12"', b'"body_bytes_sent":1' + b"0" * 4_300)
    deep = (b'{"time_iso8601":"2024-05-01T12:00:00+02:00","x":' + b"[" * 30_000
            + b"]" * 30_000 + b"}")
    surrogate = NGINX.replace(b'"curl/8.0 \\"q\\""', b'"\\ud800"')
    result = parse_lines([NGINX, huge, deep, surrogate, NGINX, NGINX, surrogate, NGINX], "json")

    reasons = dict(zip(result.rejects["line_index"].to_pylist(),
                       result.rejects["reason"].to_pylist()))
    # The last is found by halving the batch, the lines around it parsed as usual.
    assert reasons == {1: "bad_json", 2: "bad_json", 3: "parser_error", 6: "parser_error"}
    assert result.rows["line_index"].to_pylist() == [0, 4, 5, 7]
    assert "surrogates not allowed" in result.rejects["message"].to_pylist()[2]


def test_a_time_of_true_is_no_time():
    """Python takes `true` for 1: the line became a request of 1970-01-01 00:00:01."""
    line = b'{"remote_addr":"192.0.2.1","time":true,"request":"GET / HTTP/1.1","status":200}'
    result = parse_lines([line], "json")
    assert result.rejects["reason"].to_pylist() == ["bad_timestamp"]
