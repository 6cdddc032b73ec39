"""Format specs: presets, Apache and nginx strings, and errors that name the bad spec."""

import pytest

from logstack_dagster.parser import PRESETS, LogFormat, parse_lines, resolve_format

LINE = b'192.0.2.5 - bob [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 404 7 "-" "ua" 0.250'


def test_presets_resolve_to_themselves():
    for name, fmt in PRESETS.items():
        assert resolve_format(name) is fmt
        assert resolve_format(fmt) is fmt


@pytest.mark.parametrize("spec", ["combinde", "", "%h %l %u", "$remote_addr $status", 42, None])
def test_bad_specs_raise_value_error_naming_the_spec(spec):
    with pytest.raises(ValueError) as err:
        resolve_format(spec)
    assert repr(spec) in str(err.value)


def test_custom_time_directive_is_refused_with_the_directive_quoted():
    with pytest.raises(ValueError, match=r"'%\{%Y-%m-%d\}t'"):
        resolve_format('%h %{%Y-%m-%d}t "%r" %>s')


@pytest.mark.parametrize(("spec", "named"), [
    ('%h %t %>s %Q', "unknown directive '%Q'"),
    ('%h %l %u %t "%r" %>s %b %{', "incomplete directive '%{'"),
    ('%h %l %u %t "%r" %>s %b %', "incomplete directive '%'"),
])
def test_directives_apache_does_not_know_are_refused(spec, named):
    with pytest.raises(ValueError) as err:
        resolve_format(spec)
    assert named in str(err.value)


def test_known_directives_without_a_column_are_kept_as_extras():
    fmt = resolve_format('%h %l %u %t "%r" %>s %b %k %{X-Id}i %D')
    result = parse_lines([b'192.0.2.5 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" '
                          b'200 7 3 abc 250'], fmt)
    assert result.accepted == 1


def test_parse_lines_raises_for_a_bad_spec_before_reading_lines():
    with pytest.raises(ValueError, match="'vhost_combinde'"):
        parse_lines([LINE], "vhost_combinde")


def test_apache_format_string_with_a_trailing_directive():
    fmt = resolve_format('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %T')
    row = parse_lines([LINE], fmt).rows.to_pylist()[0]

    assert isinstance(fmt, LogFormat)
    assert (row["user"], row["status_code"], row["extra_fields"]) == ("bob", 404, ["0.250"])


def test_nginx_format_string_with_request_time():
    spec = (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" $request_time'
    )
    row = parse_lines([LINE], spec).rows.to_pylist()[0]

    assert (row["client"], row["user"], row["bytes_sent"]) == ("192.0.2.5", "bob", 7)
    assert row["extra_fields"] == ["0.250"]


def test_apache_format_with_separate_method_and_path():
    fmt = "%a %t %m %U%q %H %>s %O"
    line = b"192.0.2.9 [10/Oct/2000:13:55:36 +0000] POST /api?k=v HTTP/2 201 10"
    row = parse_lines([line], fmt).rows.to_pylist()[0]

    assert (row["method"], row["path"], row["query"], row["protocol"]) == (
        "POST",
        "/api",
        "k=v",
        "HTTP/2",
    )
    assert row["malformed_request"] is False and row["request"] is None


def test_nginx_main_preset_reads_its_forwarded_for_field():
    line = LINE.replace(b" 0.250", b' "198.51.100.4, 10.0.0.1"')
    row = parse_lines([line], "main").rows.to_pylist()[0]

    assert row["forwarded_for"] == "198.51.100.4, 10.0.0.1"
