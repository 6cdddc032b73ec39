"""Log format descriptions: presets, Apache `LogFormat` and nginx `log_format` strings.

A text format is a sequence of tokens, each either literal text or a named field. The same
tokens give a strict RE2 pattern for the vectorised path and a lenient Python pattern for the
few lines the strict one refuses, so the two paths cannot drift apart.
"""

import re
from dataclasses import dataclass, field

TEXT, W3C, JSON = "text", "w3c", "json"

# Field names a token may carry. "hostport" is Apache's `%v:%p` (port optional), "extra" any
# directive the product has no column for: its value lands in `extra_fields`.
FIELDS = (
    "client", "ident", "user", "time", "time_iso", "request", "method", "target", "protocol",
    "status", "bytes", "referrer", "user_agent", "vhost", "hostport", "port", "xff", "extra",
)


@dataclass(frozen=True)
class Token:
    """Literal text (`name` is None) or a field placeholder (`text` is the directive)."""

    text: str
    name: str | None = None


@dataclass(frozen=True)
class LogFormat:
    """A parsable log format.

    `kind` is "text" (token sequence), "w3c" (fields named by a `#Fields:` header, `w3c_fields`
    being the default before one is seen) or "json" (`json_fields` maps a column to the JSON
    keys, dotted for nesting, tried in order). `trailing` lets text lines carry extra fields
    after the format's own ones (X-Forwarded-For, request time...).
    """

    name: str
    kind: str = TEXT
    tokens: tuple[Token, ...] = ()
    trailing: bool = False
    spec: str = ""
    w3c_fields: tuple[str, ...] = ()
    json_fields: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tokens if t.name)


_APACHE_DIRECTIVE = re.compile(r"%[<>!,\d]*(?:\{([^}]*)\})?[<>]?([a-zA-Z%])")
_NGINX_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")

_APACHE_HEADERS = {"referer": "referrer", "user-agent": "user_agent", "x-forwarded-for": "xff"}
_APACHE_LETTERS = {
    "h": "client", "a": "client", "l": "ident", "u": "user", "t": "time", "r": "request",
    "s": "status", "b": "bytes", "B": "bytes", "O": "bytes", "v": "vhost", "V": "vhost",
    "p": "port", "m": "method", "U": "target", "H": "protocol",
}
_NGINX_VARIABLES = {
    "remote_addr": "client", "realip_remote_addr": "client", "remote_user": "user",
    "time_local": "time", "time_iso8601": "time_iso", "request": "request",
    "request_method": "method", "request_uri": "target", "uri": "target",
    "server_protocol": "protocol", "status": "status", "body_bytes_sent": "bytes",
    "bytes_sent": "bytes", "http_referer": "referrer", "http_user_agent": "user_agent",
    "http_x_forwarded_for": "xff", "host": "vhost", "server_name": "vhost",
    "http_host": "vhost", "server_port": "port",
}


# Every directive letter mod_log_config knows; those without a column become extras.
_APACHE_KNOWN = set("aAbBCDefhHiIklLmnoOpPqrRsStTuUvVX%")


def apache_tokens(spec: str) -> tuple[Token, ...]:
    """Translate an Apache `LogFormat` string into tokens; directives Apache knows but we
    keep no column for become extras, letters Apache does not know are an error."""
    tokens: list[Token] = []
    pos = 0
    for m in _APACHE_DIRECTIVE.finditer(spec):
        tokens.append(Token(_literal(spec, pos, m.start())))
        tokens.extend(_apache_directive(m.group(1), m.group(2), m.group(0), spec))
        pos = m.end()
    tokens.append(Token(_literal(spec, pos, len(spec))))
    return _merge(tokens)


def _literal(spec: str, start: int, end: int) -> str:
    """The text between two directives, which must not hold a `%` of its own."""
    text = spec[start:end]
    if "%" in text:
        at = start + text.index("%")
        raise ValueError(f"incomplete directive {spec[at:at + 12]!r} at position {at} of "
                         f"log format {spec!r}")
    return text


def _apache_directive(arg: str | None, letter: str, text: str, spec: str) -> list[Token]:
    if letter not in _APACHE_KNOWN:
        raise ValueError(f"unknown directive {text!r} in log format {spec!r}")
    if letter == "%":
        return [Token("%")]
    if letter == "t" and arg is not None:
        raise ValueError(
            f"unsupported time directive {text!r} in log format {spec!r}: "
            "only %t (CLF) is understood"
        )
    if letter == "t":
        return [Token("["), Token(text, "time"), Token("]")]
    if letter == "i" and arg is not None:
        return [Token(text, _APACHE_HEADERS.get(arg.lower(), "extra"))]
    if letter == "a" and arg is not None and arg != "c":
        return [Token(text, "extra")]
    return [Token(text, _APACHE_LETTERS.get(letter, "extra"))]


def nginx_tokens(spec: str) -> tuple[Token, ...]:
    """Translate an nginx `log_format` string into tokens; unknown variables become extras."""
    tokens: list[Token] = []
    pos = 0
    for m in _NGINX_VARIABLE.finditer(spec):
        tokens.append(Token(spec[pos : m.start()]))
        variable = m.group(1) or m.group(2)
        tokens.append(Token(m.group(0), _NGINX_VARIABLES.get(variable, "extra")))
        pos = m.end()
    tokens.append(Token(spec[pos:]))
    return _merge(tokens)


def _merge(tokens: list[Token]) -> tuple[Token, ...]:
    """Join adjacent literals, drop empty ones, fuse `%v:%p` and `%U%q` into one field each."""
    merged: list[Token] = []
    for token in tokens:
        if token.name is None and merged and merged[-1].name is None:
            merged[-1] = Token(merged[-1].text + token.text)
        elif token.name is not None or token.text:
            merged.append(token)

    fused: list[Token] = []
    for token in merged:
        if token.text == "%q" and fused and fused[-1].text == "%U":
            fused[-1] = Token("%U%q", "target")  # path and query string make the target
        elif (
            token.name == "port" and len(fused) >= 2 and fused[-1].text == ":"
            and fused[-1].name is None and fused[-2].name == "vhost"
        ):
            fused[-2:] = [Token(fused[-2].text + ":" + token.text, "hostport")]
        else:
            fused.append(token)
    return tuple(fused)


def _check_fields(spec: str, tokens: tuple[Token, ...]) -> None:
    names = [t.name for t in tokens if t.name]
    if "time" not in names and "time_iso" not in names:
        raise ValueError(f"log format {spec!r} has no timestamp (%t, $time_local, $time_iso8601)")
    if "status" not in names:
        raise ValueError(f"log format {spec!r} has no status field (%>s, %s, $status)")
    doubled = {n for n in names if names.count(n) > 1 and n != "extra"}
    if doubled:
        raise ValueError(f"log format {spec!r} logs {sorted(doubled)} more than once")


def text_format(name: str, spec: str, trailing: bool = False) -> LogFormat:
    """Build a text LogFormat from an Apache or nginx format string (chosen by `$` vs `%`)."""
    is_nginx = "$" in spec and not _APACHE_DIRECTIVE.search(spec)
    tokens = nginx_tokens(spec) if is_nginx else apache_tokens(spec)
    _check_fields(spec, tokens)
    return LogFormat(name=name, tokens=tokens, trailing=trailing, spec=spec)
