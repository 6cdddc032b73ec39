"""From raw field text to the product's columns, vectorised over the whole batch.

Values that need Python (IPv6 canonical form, percent-decoding, odd request lines) are
computed once per distinct value on the few rows that need them, then scattered back.
"""

import functools
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

import pyarrow as pa
import pyarrow.compute as pc

from logstack_dagster.parser.schema import PARSED_SCHEMA

_IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
# An HTTP request line as servers write it; anything else goes through _split_request.
_PLAIN_REQUEST = r"^[A-Z]+ [^ ]+ [A-Z]+/[0-9.]+$"
_REQUEST_LINE = re.compile(
    r"^([A-Za-z][A-Za-z0-9_-]{0,31}) +([^ ].*?)(?: +([A-Za-z]+/[0-9A-Za-z.]+))? *$", re.DOTALL
)


def derive_rows(raw: pa.Table) -> pa.Table:
    """Raw rows (RAW_SCHEMA) to the final rows (PARSED_SCHEMA)."""
    raw = {name: raw.column(name).combine_chunks() for name in raw.column_names}
    client = _dash_null(raw["client"])
    ip = _canonical_ips(client)
    method, target, protocol, request, malformed = _request_parts(raw)
    path, query = _split_target(target)
    vhost, port = _host_and_port(raw["vhost"], raw["port"])
    columns = {
        "line_index": raw["line_index"],
        "event_time": raw["event_time"],
        "utc_offset": raw["utc_offset"],
        "client": pc.coalesce(ip, client),
        "ip": ip,
        "ident": _dash_null(raw["ident"]),
        "user": _dash_null(raw["user"]),
        "method": method,
        "target": target,
        "path": path,
        "query": query,
        "path_decoded": _per_distinct(path, "%", _percent_decode),
        "protocol": protocol,
        "request": request,
        "status_code": pc.cast(_dash_null(raw["status"]), pa.int32()),
        "bytes_sent": pc.cast(_dash_null(raw["bytes"]), pa.int64()),
        "referrer": _dash_null(raw["referrer"]),
        "user_agent": _dash_null(raw["user_agent"]),
        "vhost": vhost,
        "server_port": pc.cast(port, pa.int32()),
        "forwarded_for": _dash_null(raw["xff"]),
        "extra_fields": pc.fill_null(raw["extra"], pa.scalar([], pa.list_(pa.string()))),
        "malformed_request": malformed,
        "tz_missing": pc.fill_null(raw["tz_missing"], False),
        "line_truncated": pc.fill_null(raw["line_truncated"], False),
    }
    arrays = [pc.cast(columns[f.name], f.type) for f in PARSED_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PARSED_SCHEMA)


def _dash_null(values):
    """'-' and '' mean "not logged" in every CLF-style field."""
    missing = pc.or_(pc.equal(values, "-"), pc.equal(values, ""))
    return pc.if_else(pc.fill_null(missing, False), pa.scalar(None, pa.string()), values)


def _canonical_ips(client):
    """Canonical address where the client is an IP address, else null."""
    plain = pc.fill_null(pc.match_substring_regex(client, _IPV4), False)
    ip = pc.if_else(plain, client, pa.scalar(None, pa.string()))
    odd = pc.and_(pc.invert(plain), pc.fill_null(pc.match_substring(client, ":"), False))
    if not pc.any(odd).as_py():
        return ip
    fixed = _map_distinct(pc.filter(client, odd), _canonical_ip)
    return pc.replace_with_mask(ip, odd, fixed)


# IPv6 clients come back batch after batch; the ipaddress module takes microseconds each.
@functools.lru_cache(maxsize=1 << 16)
def _canonical_ip(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    # Python 3.11 writes a mapped IPv4 address in hex (`::ffff:102:304`); RFC 5952 keeps
    # the dotted quad, as servers log it.
    mapped = getattr(address, "ipv4_mapped", None)
    return f"::ffff:{mapped}" if mapped is not None else str(address)


def _request_parts(raw: dict):
    """method, target, protocol, request (kept only when not HTTP) and malformed flag."""
    request = raw["request"]
    plain = pc.fill_null(pc.match_substring_regex(request, _PLAIN_REQUEST), False)
    method, target, protocol = _scatter_split(request, plain)

    # Formats that log method, target and protocol separately (%m %U %H) have no request.
    method = pc.coalesce(method, _dash_null(raw["method"]))
    target = pc.coalesce(target, _dash_null(raw["target"]))
    protocol = pc.coalesce(protocol, _dash_null(raw["protocol"]))

    odd = pc.and_(pc.invert(plain), pc.is_valid(request))
    odd = pc.and_(odd, pc.not_equal(request, "-"))
    if pc.any(odd).as_py():
        method, target, protocol, malformed = _odd_requests(request, odd, method, target, protocol)
    else:
        malformed = pa.array([False] * len(request))
    kept = pc.if_else(malformed, request, pa.scalar(None, pa.string()))
    return method, target, protocol, kept, malformed


def _scatter_split(request, plain):
    nulls = pa.nulls(len(request), pa.string())
    if not pc.any(plain).as_py():
        return nulls, nulls, nulls
    if pc.all(plain).as_py():
        parts = pc.split_pattern(request, " ")
        return tuple(pc.list_element(parts, k) for k in range(3))
    parts = pc.split_pattern(pc.filter(request, plain), " ")
    return tuple(pc.replace_with_mask(nulls, plain, pc.list_element(parts, k)) for k in range(3))


def _odd_requests(request, odd, method, target, protocol):
    found = [_REQUEST_LINE.match(r) for r in pc.filter(request, odd).to_pylist()]
    pieces = [m.groups() if m else (None, None, None) for m in found]
    columns = []
    for k, base in enumerate((method, target, protocol)):
        values = pa.array([p[k] for p in pieces], pa.string())
        columns.append(pc.coalesce(pc.replace_with_mask(base, odd, values), base))
    bad = pa.array([m is None for m in found])
    malformed = pc.replace_with_mask(pa.array([False] * len(request)), odd, bad)
    return (*columns, malformed)


def _split_target(target):
    """Target cut at the first '?': path, and query (null when there is no '?')."""
    has_query = pc.fill_null(pc.greater_equal(pc.find_substring(target, "?"), 0), False)
    query = pa.nulls(len(target), pa.string())
    if not pc.any(has_query).as_py():
        return target, query
    parts = pc.split_pattern(pc.filter(target, has_query), "?", max_splits=1)
    path = pc.replace_with_mask(target, has_query, pc.list_element(parts, 0))
    return path, pc.replace_with_mask(query, has_query, pc.list_element(parts, 1))


def _host_and_port(vhost, port):
    """Split `host:port` values of `%v:%p` formats; an explicit port column wins."""
    vhost = _dash_null(vhost)
    glued = pc.fill_null(pc.match_substring_regex(vhost, r"^[^:]*:\d+$"), False)
    if not pc.any(glued).as_py():
        return vhost, _dash_null(port)
    parts = pc.split_pattern(pc.filter(vhost, glued), ":")
    host = pc.replace_with_mask(vhost, glued, pc.list_element(parts, 0))
    glued_port = pc.replace_with_mask(pa.nulls(len(vhost), pa.string()), glued,
                                      pc.list_element(parts, 1))
    return host, pc.coalesce(_dash_null(port), glued_port)


def _per_distinct(values, needle: str, func: Callable[[str], str]):
    """func applied to the values containing needle, once per distinct value."""
    hit = pc.fill_null(pc.match_substring(values, needle), False)
    if not pc.any(hit).as_py():
        return values
    return pc.replace_with_mask(values, hit, _map_distinct(pc.filter(values, hit), func))


def _map_distinct(values, func: Callable[[str], str | None]):
    encoded = pc.dictionary_encode(values)
    mapped = pa.array([func(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(mapped, encoded.indices)


def _percent_decode(text: str) -> str:
    """Percent-decoded text; byte runs that are not UTF-8 stay percent-encoded."""
    decoded = unquote_to_bytes(text).decode("utf-8", "surrogateescape")
    if not any("\udc80" <= c <= "\udcff" for c in decoded):
        return decoded
    return "".join(f"%{ord(c) - 0xDC00:02X}" if "\udc80" <= c <= "\udcff" else c for c in decoded)
