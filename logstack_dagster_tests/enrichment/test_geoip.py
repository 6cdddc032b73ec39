import ipaddress
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from logstack_dagster.enrichment.geoip import (
    ENRICHED_SCHEMA,
    GeoEnricher,
    _SPECIAL_FIRST_OCTETS,
    _Answer,
    default_city_db_path,
    _scope,
    ip_scope,
)


class CountingReader:
    """Wraps a database's record reader to count which addresses reach the database."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.asked: list[str] = []

    def get(self, ip: str):
        self.asked.append(ip)
        return self.reader.get(ip)

    def __getattr__(self, name: str):
        return getattr(self.reader, name)


@pytest.fixture
def geo() -> GeoEnricher:
    with GeoEnricher() as enricher:
        yield enricher


@pytest.fixture
def counting(geo: GeoEnricher) -> CountingReader:
    counter = CountingReader(geo._city_records)
    geo._city_records = counter
    return counter


def table(ips: list[str | None]) -> pa.Table:
    return pa.table({"ip": pa.array(ips, pa.string()), "row": list(range(len(ips)))})


def test_bundled_database_is_found() -> None:
    path = default_city_db_path()

    assert path.name == "GeoLite2-City.mmdb"
    assert path.stat().st_size > 10_000_000


def test_build_date_of_the_bundled_database(geo: GeoEnricher) -> None:
    assert geo.database_build_date == datetime(2019, 12, 24, 17, 41, 41, tzinfo=UTC)
    assert geo.database_type == "GeoLite2-City"


def test_public_addresses_get_country_city_and_location(geo: GeoEnricher) -> None:
    out = geo.enrich(table(["8.8.8.8", "79.192.10.20", "2003:e5::1", "126.10.20.30"]))
    rows = out.to_pylist()

    assert [r["country"] for r in rows] == ["US", "DE", "DE", "JP"]
    assert rows[0]["country_name"] == "United States"
    assert rows[3]["country_name"] == "Japan"
    assert all(r["ip_scope"] == "public" for r in rows)
    assert all(-90 <= r["latitude"] <= 90 and -180 <= r["longitude"] <= 180 for r in rows)
    assert any(r["city"] for r in rows) and any(r["region"] for r in rows)


def test_schema_appends_typed_columns_and_keeps_rows(geo: GeoEnricher) -> None:
    source = table(["8.8.8.8", None, "10.0.0.1"])

    out = geo.enrich(source)

    assert out.schema.names == ["ip", "row", *ENRICHED_SCHEMA.names]
    assert out.schema.field("latitude").type == pa.float64()
    assert out.schema.field("asn").type == pa.int64()
    assert out.column("row").to_pylist() == [0, 1, 2]
    assert out.select(["ip", "row"]).equals(source)


@pytest.mark.parametrize(
    ("ip", "scope"),
    [
        ("10.1.2.3", "private"),
        ("172.20.0.5", "private"),
        ("192.168.1.1", "private"),
        ("100.64.3.4", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.10.1", "link_local"),
        ("fe80::1", "link_local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("192.0.2.7", "reserved"),
        ("2001:db8::7", "reserved"),
        ("0.0.0.0", "reserved"),
        ("240.0.0.1", "reserved"),
        ("8.8.8.8", "public"),
        ("::ffff:8.8.8.8", "public"),
        ("not-an-ip", None),
    ],
)
def test_scope_of_an_address(ip: str, scope: str | None) -> None:
    assert ip_scope(ip) == scope


def test_the_quick_answer_for_plain_ipv4_agrees_with_ipaddress() -> None:
    # ip_scope answers "public" for a dotted quad outside a few first octets without
    # asking ipaddress: every network ipaddress treats specially must lie in those /8s.
    constants = ipaddress._IPv4Constants
    special = [*constants._private_networks, constants._public_network,
               constants._reserved_network, constants._multicast_network,
               constants._linklocal_network, constants._loopback_network]
    assert len(special) > 10
    for network in special:
        for first_octet in range(network[0].packed[0], network[-1].packed[0] + 1):
            assert first_octet in _SPECIAL_FIRST_OCTETS, network

    # And the quick answers are the ones ipaddress gives, on the edges of every /8 and on
    # addresses all over the space.
    rng = random.Random(7)
    numbers = [octet << 24 | low for octet in range(256) for low in (0, 1, 0xFFFFFF)]
    numbers += [rng.getrandbits(32) for _ in range(20_000)]
    for number in numbers:
        address = ipaddress.IPv4Address(number)
        assert ip_scope(str(address)) == _scope(address), address
    assert sum(ip_scope(str(ipaddress.IPv4Address(n))) == "public" for n in numbers) > 15_000


def test_non_public_addresses_are_marked_and_never_looked_up(
    geo: GeoEnricher, counting: CountingReader
) -> None:
    out = geo.enrich(table(["10.0.0.1", "127.0.0.1", "fe80::1", "192.0.2.1", "8.8.8.8"]))

    assert counting.asked == ["8.8.8.8"]
    assert out.column("ip_scope").to_pylist() == [
        "private",
        "loopback",
        "link_local",
        "reserved",
        "public",
    ]
    assert out.column("country").to_pylist() == [None, None, None, None, "US"]


def test_null_and_garbage_addresses_get_nulls_and_one_warning(
    geo: GeoEnricher, caplog: pytest.LogCaptureFixture
) -> None:
    out = geo.enrich(table([None, "999.1.1.1", "8.8.8.8", "66.249.7", "999.1.1.1"]))

    for name in ENRICHED_SCHEMA.names:
        assert out.column(name).to_pylist()[:2] == [None, None], name
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "2 distinct ip values are not IP addresses and stay unenriched, e.g. '999.1.1.1'"
    ]


def test_each_address_is_looked_up_once_across_batches(
    geo: GeoEnricher, counting: CountingReader
) -> None:
    geo.enrich(table(["8.8.8.8"] * 500 + ["1.1.1.1"] * 500))
    geo.enrich(table(["1.1.1.1", "8.8.8.8", "9.9.9.9"] * 100))

    assert sorted(counting.asked) == ["1.1.1.1", "8.8.8.8", "9.9.9.9"]


def test_cache_is_bounded_and_keeps_recent_addresses() -> None:
    with GeoEnricher(cache_size=10) as geo:
        geo.enrich(table([f"8.8.{i}.1" for i in range(50)]))
        assert geo.cache_len == 10

        counting = CountingReader(geo._city_records)
        geo._city_records = counting
        geo.enrich(table(["8.8.49.1", "8.8.0.1"]))

    assert counting.asked == ["8.8.0.1"]


def test_chunked_and_large_string_columns(geo: GeoEnricher) -> None:
    ips = ["8.8.8.8", None, "10.0.0.1", "2003:e5::1"] * 3
    plain = geo.enrich(table(ips))
    chunked = pa.Table.from_batches(table(ips).to_batches(max_chunksize=5))
    large = table(ips).cast(pa.schema([("ip", pa.large_string()), ("row", pa.int64())]))

    assert (
        geo.enrich(chunked)
        .select(ENRICHED_SCHEMA.names)
        .equals(plain.select(ENRICHED_SCHEMA.names))
    )
    assert geo.enrich(large).column("country").to_pylist() == plain.column("country").to_pylist()


def test_empty_table(geo: GeoEnricher) -> None:
    out = geo.enrich(table([]))

    assert out.num_rows == 0
    assert out.schema.names[-len(ENRICHED_SCHEMA) :] == ENRICHED_SCHEMA.names


def test_answer_fields_follow_the_schema() -> None:
    assert _Answer._fields == tuple(ENRICHED_SCHEMA.names)


def test_enriching_twice_is_refused(geo: GeoEnricher) -> None:
    once = geo.enrich(table(["8.8.8.8"]))

    with pytest.raises(ValueError, match="already has enrichment columns"):
        geo.enrich(once)


def test_table_without_ip_column_is_refused(geo: GeoEnricher) -> None:
    with pytest.raises(ValueError, match=r"no 'ip' column; its columns are \['addr'\]"):
        geo.enrich(pa.table({"addr": ["8.8.8.8"]}))
    with pytest.raises(ValueError, match="column 'ip' must be a string column, got type int64"):
        geo.enrich(pa.table({"ip": [1]}))


def test_missing_database_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "GeoLite2-City.mmdb"

    with pytest.raises(FileNotFoundError, match=re.escape(f"City database not found: {missing}")):
        GeoEnricher(city_db=missing)


def test_a_file_that_is_no_maxmind_database_names_the_path(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mmdb"
    bogus.write_bytes(b"certainly not a MaxMind database" * 100)

    with pytest.raises(ValueError, match=re.escape(f"not a MaxMind database: {bogus}")):
        GeoEnricher(city_db=bogus)


def test_a_database_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"is a 'GeoLite2-City' database; expected a GeoIP2 ASN database"
    ):
        GeoEnricher(asn_db=default_city_db_path())


def test_asn_database_fills_asn_and_organisation(tmp_path: Path) -> None:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    writer = mmdb_writer.MMDBWriter(
        ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True, int_type="u32"
    )
    writer.insert_network(
        IPSet(["8.8.8.0/24"]),
        {
            "autonomous_system_number": 15169,
            "autonomous_system_organization": "GOOGLE",
        },
    )
    path = tmp_path / "GeoLite2-ASN.mmdb"
    writer.to_db_file(str(path))

    with GeoEnricher(asn_db=path) as geo:
        out = geo.enrich(table(["8.8.8.8", "1.1.1.1", "10.0.0.1"]))

    assert out.column("asn").to_pylist() == [15169, None, None]
    assert out.column("as_org").to_pylist() == ["GOOGLE", None, None]


def test_answers_are_those_of_geoip2s_models(geo: GeoEnricher) -> None:
    """The look-ups read raw records; every field must still be what geoip2 answers."""
    import random

    import geoip2.database
    import geoip2.errors

    rng = random.Random(11)
    ips = [".".join(str(rng.randint(1, 254)) for _ in range(4)) for _ in range(3_000)]
    ips += [f"2a0{rng.randint(0, 9)}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
            for _ in range(1_000)]
    rows = geo.enrich(table(ips)).to_pylist()

    compared = 0
    with geoip2.database.Reader(str(default_city_db_path())) as reader:
        for ip, row in zip(ips, rows, strict=True):
            if row["ip_scope"] != "public":
                continue
            try:
                found = reader.city(ip)
            except geoip2.errors.AddressNotFoundError:
                assert row["country"] is None and row["latitude"] is None, ip
                continue
            expected = (found.country.iso_code, found.country.name,
                        found.subdivisions.most_specific.name, found.city.name,
                        found.location.latitude, found.location.longitude)
            got = tuple(row[k] for k in ("country", "country_name", "region", "city",
                                         "latitude", "longitude"))
            assert got == expected, ip
            compared += 1
    # Most of them are in the database, many with a region and a city.
    assert compared > 2_500
    assert sum(1 for r in rows if r["city"]) > 500


def test_an_address_with_a_zone_is_placed_without_it(geo: GeoEnricher) -> None:
    out = geo.enrich(table(["2a00:1450::1%eth0", "2a00:1450::1", "fe80::1%eth0"])).to_pylist()

    assert out[0]["country"] == out[1]["country"] is not None
    assert out[0]["ip_scope"] == "public"
    assert out[2]["ip_scope"] == "link_local" and out[2]["country"] is None


def test_an_ipv4_only_database_leaves_ipv6_clients_unplaced(tmp_path: Path) -> None:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    writer = mmdb_writer.MMDBWriter(ip_version=4, database_type="GeoLite2-City")
    writer.insert_network(IPSet(["8.8.8.0/24"]), {"country": {"iso_code": "US"}})
    path = tmp_path / "GeoLite2-City-v4.mmdb"
    writer.to_db_file(str(path))

    with GeoEnricher(city_db=path) as geo:
        out = geo.enrich(table(["8.8.8.8", "2a00:1450::1"]))

    assert out.column("country").to_pylist() == ["US", None]
    assert out.column("ip_scope").to_pylist() == ["public", "public"]
