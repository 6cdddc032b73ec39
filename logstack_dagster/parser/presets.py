"""Named formats and the resolution of a user's format spec into a LogFormat."""

from logstack_dagster.parser.formats import JSON, W3C, LogFormat, Token, text_format

# Apache's own definitions (httpd.conf); every CLF preset accepts trailing extra fields
# because one stream may mix lines with and without them (X-Forwarded-For, %D...).
COMBINED = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"'
COMMON = '%h %l %u %t "%r" %>s %b'
VHOST_COMBINED = '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"'
VHOST_COMMON = '%v:%p %h %l %u %t "%r" %>s %b'
# nginx's sample `main` format from the stock nginx.conf.
NGINX_MAIN = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" "$http_x_forwarded_for"'
)
# Virtual host first and no ident/user, as AWStats' nginx test logs have it.
NGINX_VHOST = (
    '$host $remote_addr [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)

# IIS's default W3C field list, used until a `#Fields:` header names the real ones.
IIS_FIELDS = (
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
    "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
).split()

# Column -> JSON keys tried in order: nginx `escape=json` conventions, Caddy, Traefik.
JSON_FIELDS = (
    ("client", ("remote_addr", "request.remote_ip", "request.client_ip", "ClientHost", "client")),
    ("user", ("remote_user", "user_id", "ClientUsername")),
    ("time", ("time_iso8601", "time_local", "time", "ts", "StartUTC", "timestamp")),
    ("request", ("request",)),
    ("method", ("request_method", "request.method", "RequestMethod", "method")),
    ("target", ("request_uri", "request.uri", "RequestPath", "uri")),
    ("protocol", ("server_protocol", "request.proto", "RequestProtocol", "protocol")),
    ("status", ("status", "DownstreamStatus", "OriginStatus")),
    ("bytes", ("body_bytes_sent", "bytes_sent", "size", "DownstreamContentSize")),
    ("referrer", ("http_referer", "request.headers.Referer", "request_Referer", "referer")),
    ("user_agent", (
        "http_user_agent", "request.headers.User-Agent", "request_User-Agent", "user_agent",
    )),
    ("vhost", ("host", "server_name", "request.host", "RequestHost")),
    ("port", ("server_port", "RequestPort")),
    ("xff", ("http_x_forwarded_for", "request.headers.X-Forwarded-For",
             "request_X-Forwarded-For")),
)


def _iso_variant(name: str, base: LogFormat) -> LogFormat:
    """The same format with an ISO-8601 timestamp in place of the bracketed CLF one."""
    tokens: list[Token] = []
    for token in base.tokens:
        if token.name == "time":
            tokens[-1] = Token(tokens[-1].text[:-1]) if tokens[-1].text != "[" else tokens[-1]
            tokens.append(Token("%{iso}t", "time_iso"))
        elif token.name is None and token.text.startswith("]"):
            tokens.append(Token(token.text[1:]))
        else:
            tokens.append(token)
    kept = tuple(t for t in tokens if t.name or t.text)
    return LogFormat(name=name, tokens=kept, trailing=base.trailing, spec=base.spec + " (ISO)")


def _build_presets() -> dict[str, LogFormat]:
    text = {
        "combined": text_format("combined", COMBINED, trailing=True),
        "common": text_format("common", COMMON, trailing=True),
        "vhost_combined": text_format("vhost_combined", VHOST_COMBINED, trailing=True),
        "vhost_common": text_format("vhost_common", VHOST_COMMON, trailing=True),
        "main": text_format("main", NGINX_MAIN, trailing=True),
        "nginx_vhost": text_format("nginx_vhost", NGINX_VHOST, trailing=True),
    }
    text["combined_iso"] = _iso_variant("combined_iso", text["combined"])
    text["common_iso"] = _iso_variant("common_iso", text["common"])
    text["w3c"] = LogFormat(name="w3c", kind=W3C, w3c_fields=tuple(IIS_FIELDS), spec="w3c")
    text["json"] = LogFormat(name="json", kind=JSON, json_fields=JSON_FIELDS, spec="json")
    return text


PRESETS: dict[str, LogFormat] = _build_presets()


def resolve_format(spec: "str | LogFormat") -> LogFormat:
    """Turn a preset name, a `#Fields:` line, an Apache or an nginx format string into a format.

    Raises ValueError naming the spec when it is none of these or cannot be used.
    """
    if isinstance(spec, LogFormat):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"log format spec must be a string or LogFormat, got {spec!r}")

    text = spec.strip()
    if text in PRESETS:
        return PRESETS[text]
    if text.startswith("#Fields:"):
        fields = tuple(text[len("#Fields:"):].split())
        if not fields:
            raise ValueError(f"W3C format spec {spec!r} names no fields")
        return LogFormat(name="w3c", kind=W3C, w3c_fields=fields, spec=text)
    if "%" in text or "$" in text:
        return text_format("custom", text, trailing=False)
    raise ValueError(
        f"unknown log format {spec!r}: expected a preset ({', '.join(sorted(PRESETS))}), "
        "'auto', an Apache LogFormat string (%h %l ...), an nginx log_format string "
        "($remote_addr ...) or a W3C '#Fields:' line"
    )


def format_spec(fmt: LogFormat) -> str:
    """The string `resolve_format` turns back into `fmt`: its preset name, else its spec."""
    if PRESETS.get(fmt.name) == fmt:
        return fmt.name
    if not fmt.spec:
        raise ValueError(f"format {fmt.name!r} has neither a preset name nor a spec")
    return fmt.spec
