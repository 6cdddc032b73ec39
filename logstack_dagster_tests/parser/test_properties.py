"""Property tests: records written in CLF read back unchanged; any bytes are accounted for."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from logstack_dagster.parser import parse_lines

def _as_logged(address) -> str:
    """An address as servers write it (inet_ntop): a mapped IPv4 one keeps its dotted quad,
    where Python 3.11's str() writes `::ffff:0:0`."""
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped is not None else str(address)


MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_TOKEN = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='"\\'),
    min_size=1,
    max_size=20,
)
_QUOTED = st.text(
    st.characters(
        min_codepoint=32,
        max_codepoint=0x2FFF,
        blacklist_characters='"\\',
        blacklist_categories=("Cs",),
    ),
    max_size=60,
).filter(lambda s: s.strip() not in ("", "-") and s == s.strip())

record = st.fixed_dictionaries(
    {
        "ip": st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(_as_logged),
        "user": _TOKEN.filter(lambda s: s != "-"),
        "when": st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)),
        "offset_minutes": st.integers(-14 * 60, 14 * 60),
        "method": st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PROPFIND"]),
        "path": _TOKEN.map(lambda s: "/" + s.replace("?", "")),
        "query": st.none() | _TOKEN,
        "protocol": st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/2", "HTTP/3"]),
        "status": st.integers(100, 599),
        "bytes": st.none() | st.integers(0, 2**40),
        "referrer": st.none() | _QUOTED,
        "agent": st.none() | _QUOTED,
    }
)


def _clf(r: dict, combined: bool) -> bytes:
    sign = "-" if r["offset_minutes"] < 0 else "+"
    hours, minutes = divmod(abs(r["offset_minutes"]), 60)
    w = r["when"].replace(microsecond=0)
    stamp = f"{w:%d}/{MONTHS[w.month - 1]}/{w:%Y:%H:%M:%S} {sign}{hours:02d}{minutes:02d}"
    target = r["path"] + ("?" + r["query"] if r["query"] is not None else "")
    size = "-" if r["bytes"] is None else str(r["bytes"])
    line = (
        f'{r["ip"]} - {r["user"]} [{stamp}] "{r["method"]} {target} {r["protocol"]}" '
        f"{r['status']} {size}"
    )
    if combined:
        line += f' "{r["referrer"] or "-"}" "{r["agent"] or "-"}"'
    return (line + "\n").encode()


def _check(row: dict, r: dict, combined: bool) -> None:
    local = r["when"].replace(microsecond=0, tzinfo=timezone.utc)
    assert row["event_time"] == local - timedelta(minutes=r["offset_minutes"])
    assert (row["ip"], row["client"], row["user"]) == (r["ip"], r["ip"], r["user"])
    assert (row["method"], row["path"], row["query"], row["protocol"]) == (
        r["method"],
        r["path"],
        r["query"],
        r["protocol"],
    )
    assert (row["status_code"], row["bytes_sent"]) == (r["status"], r["bytes"])
    if combined:
        assert (row["referrer"], row["user_agent"]) == (r["referrer"], r["agent"])


@settings(max_examples=150, deadline=None)
@given(st.lists(record, min_size=1, max_size=8), st.booleans())
def test_formatted_records_parse_back_to_the_same_values(records, combined):
    fmt = "combined" if combined else "common"
    result = parse_lines([_clf(r, combined) for r in records], fmt)

    assert result.rejects.num_rows == 0, result.rejects.to_pylist()
    for row, r in zip(result.rows.to_pylist(), records):
        _check(row, r, combined)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=20),
    st.sampled_from([None, "combined", "common", "vhost_combined", "json", "w3c"]),
)
def test_random_bytes_never_raise_and_every_index_is_accounted_for(lines, fmt):
    result = parse_lines(lines, fmt)

    indexes = result.rows["line_index"].to_pylist() + result.rejects["line_index"].to_pylist()
    assert sorted(indexes) == list(range(len(lines)))
    assert all(result.rejects["message"].to_pylist())


@settings(max_examples=100, deadline=None)
@given(st.lists(record, min_size=1, max_size=5), st.lists(st.binary(max_size=80), max_size=5))
def test_garbage_mixed_into_good_lines_leaves_the_good_ones_intact(records, garbage):
    lines = [_clf(r, True) for r in records] + garbage
    result = parse_lines(lines, "combined")

    kept = result.rows["line_index"].to_pylist()
    assert set(range(len(records))) <= set(kept)
    assert sorted(kept + result.rejects["line_index"].to_pylist()) == list(range(len(lines)))
