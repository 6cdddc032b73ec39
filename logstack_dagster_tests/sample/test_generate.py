import gzip
import ipaddress
import itertools
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from logstack_dagster.enrichment.geoip import GeoEnricher
from logstack_dagster.sample.generate import DEFAULT_START, generate_lines, write_log

# Apache "combined": %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i", strictly.
COMBINED = re.compile(
    r"^(?P<ip>[0-9A-Fa-f:.]+) (?P<ident>\S+) (?P<user>\S+) "
    r"\[(?P<time>\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}"
    r":\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<method>GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (?P<path>/\S*) '
    r'(?P<proto>HTTP/[12]\.[01])" '
    r"(?P<status>[1-5]\d\d) (?P<size>\d+|-) "
    r'"(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


def parse(line: bytes) -> re.Match[str] | None:
    return COMBINED.match(line.decode())


def stamp(match: re.Match[str]) -> datetime:
    return datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z")


@pytest.fixture(scope="module")
def clean_lines() -> list[bytes]:
    return list(generate_lines(60_000, seed=11, odd_share=0))


def test_every_line_is_valid_combined_format_when_no_odd_lines(clean_lines: list[bytes]) -> None:
    bad = [line for line in clean_lines if parse(line) is None]

    assert bad == []


def test_fields_are_well_formed(clean_lines: list[bytes]) -> None:
    for line in clean_lines[:5_000]:
        match = parse(line)
        assert match is not None
        ipaddress.ip_address(match["ip"])
        assert match["size"] == "-" or int(match["size"]) >= 0
        assert DEFAULT_START <= stamp(match) < DEFAULT_START + timedelta(hours=24)


@pytest.mark.parametrize("count", [0, 1, 7, 1_000, 50_001])
def test_count_is_exact(count: int) -> None:
    assert sum(1 for _ in generate_lines(count, seed=3)) == count


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = list(generate_lines(5_000, seed=42))

    assert list(generate_lines(5_000, seed=42)) == first
    assert list(generate_lines(5_000, seed=43)) != first


def test_status_mix_is_like_a_real_site(clean_lines: list[bytes]) -> None:
    statuses = Counter(parse(line)["status"] for line in clean_lines)  # type: ignore[index]
    share = {status: n / len(clean_lines) for status, n in statuses.items()}

    assert 0.60 <= share["200"] <= 0.90
    assert 0.02 <= share["304"] <= 0.25
    assert 0.01 <= share["404"] <= 0.10
    assert {"301", "302", "403", "500", "503"} <= set(share)


def test_304_and_head_have_no_body(clean_lines: list[bytes]) -> None:
    for line in clean_lines:
        match = parse(line)
        assert match is not None
        if match["status"] == "304" or match["method"] == "HEAD":
            assert match["size"] == "-"


def test_paths_follow_a_zipf_like_popularity(clean_lines: list[bytes]) -> None:
    paths = Counter(parse(line)["path"] for line in clean_lines)  # type: ignore[index]
    ranked = [n for _, n in paths.most_common()]

    assert len(paths) >= 1_000
    # The head is much busier than the tail, and query strings occur.
    assert ranked[0] >= 50 * ranked[len(ranked) // 2]
    assert any("?" in path for path in paths)


def test_browsers_and_crawlers_are_mixed(clean_lines: list[bytes]) -> None:
    agents = Counter(parse(line)["agent"] for line in clean_lines)  # type: ignore[index]
    text = "\n".join(agents)

    for name in (
        "Chrome/",
        "Firefox/",
        "Safari/",
        "Edge/",
        "Mobile",
        "Googlebot",
        "bingbot",
        "AhrefsBot",
        "GPTBot",
        "ClaudeBot",
        "curl/",
        "python-requests/",
    ):
        assert name in text, name


def test_distinct_clients_scale_with_ip_share() -> None:
    lines = list(generate_lines(50_000, seed=2, odd_share=0, ip_share=0.02))
    ips = {parse(line)["ip"] for line in lines}  # type: ignore[index]

    assert 0.015 * len(lines) <= len(ips) <= 0.021 * len(lines)
    assert sum(":" in ip for ip in ips) >= 0.02 * len(ips)


def test_timestamps_move_forward_with_small_jitter(clean_lines: list[bytes]) -> None:
    times = [stamp(parse(line)) for line in clean_lines]  # type: ignore[arg-type]
    backwards = [a - b for a, b in itertools.pairwise(times) if b < a]

    assert max(backwards, default=timedelta(0)) <= timedelta(seconds=2)
    assert times[0] < DEFAULT_START + timedelta(minutes=5)
    assert times[-1] > DEFAULT_START + timedelta(hours=23, minutes=55)


def test_traffic_follows_the_time_of_day(clean_lines: list[bytes]) -> None:
    hours = Counter(stamp(parse(line)).hour for line in clean_lines)  # type: ignore[arg-type]

    assert hours[15] > 2 * hours[3]


def test_zone_and_window_are_configurable() -> None:
    zone = timezone(timedelta(hours=-5))
    start = datetime(2020, 3, 1, 9, 0, tzinfo=UTC)
    lines = list(generate_lines(2_000, start=start, hours=0.5, tz=zone, odd_share=0))

    times = [stamp(parse(line)) for line in lines]  # type: ignore[arg-type]
    assert all(b" -0500]" in line for line in lines)
    assert all(start <= t < start + timedelta(minutes=30) for t in times)


def test_common_format_has_no_referrer_or_agent() -> None:
    lines = list(generate_lines(2_000, fmt="common", odd_share=0))
    common = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "[A-Z]+ /\S* HTTP/\d\.\d" \d{3} (?:\d+|-)$')

    assert all(common.match(line.decode()) for line in lines)


def test_odd_lines_come_in_the_real_kinds() -> None:
    lines = list(generate_lines(50_000, seed=9, odd_share=0.04))
    odd = [line for line in lines if parse(line) is None]

    assert len(lines) == 50_000
    assert 0.02 <= len(odd) / len(lines) <= 0.05
    assert b"" in odd
    assert any(b'"-" 408 - "-" "-"' in line for line in lines)
    assert any(b'"\\x16\\x03\\x01' in line and b'" 400 ' in line for line in odd)
    assert any(not line.endswith(b'"') and line != b"" for line in odd)
    assert not any(b"\n" in line for line in lines)


def test_generated_clients_are_found_in_geoip(clean_lines: list[bytes]) -> None:
    ips = sorted({parse(line)["ip"] for line in clean_lines})  # type: ignore[index]
    with GeoEnricher() as geo:
        found = geo.enrich(pa.table({"ip": pa.array(ips, pa.string())}))

    countries = found.column("country").to_pylist()
    located = [c for c in countries if c is not None]
    assert len(located) >= 0.9 * len(ips)
    assert len(set(located)) >= 12
    assert set(found.column("ip_scope").to_pylist()) == {"public"}


@pytest.mark.parametrize("name", ["sample.log", "sample.log.gz"])
def test_write_log_writes_exactly_count_lines(tmp_path, name: str) -> None:
    path = tmp_path / name

    written = write_log(path, 3_000, seed=4)

    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as written_file:
        assert written_file.read().split(b"\n") == [*generate_lines(3_000, seed=4), b""]
    assert written == 3_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be zero or more, got -1"),
        ({"count": 1, "start": datetime(2019, 12, 2)}, "start must be timezone-aware"),
        ({"count": 1, "hours": 0}, "hours must be positive, got 0"),
        ({"count": 1, "fmt": "json"}, "unknown log format 'json'"),
        ({"count": 1, "odd_share": 1.5}, r"odd_share must be in \[0, 1\), got 1.5"),
    ],
)
def test_bad_arguments_are_refused_up_front(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_lines(**kwargs)
