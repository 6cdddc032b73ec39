"""The share of traffic from data-centre networks, from a real GeoIP2 ASN database.

The database is a small MaxMind-format file the test writes with `mmdb-writer`; the lake
is the two-hour lake of the report tests, ingested through the dataflow with it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from logstack_dagster.enrichment.networks import datacenter_sql, is_datacenter
from logstack_dagster.enrichment.pipeline import RowEnricher
from logstack_dagster.metrics.tables import DATACENTER_SHARE_SQL, NETWORKS, TRAFFIC
from logstack_dagster.report.answers import render_text, starter_answers
from logstack_dagster_tests.report.conftest import HOUR_A, HOUR_B, build_lake

GOOGLE, ANDREWS = 15169, 20712


def _asn_database(path: Path) -> Path:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoLite2-ASN",
                                    ipv4_compatible=True, int_type="u32")
    # 8.8.8.8 is in a cloud's network; 81.2.69.160 in a home ISP's; 2.125.160.216 in none.
    writer.insert_network(IPSet(["8.8.8.0/24"]), {
        "autonomous_system_number": GOOGLE, "autonomous_system_organization": "GOOGLE"})
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "autonomous_system_number": ANDREWS,
        "autonomous_system_organization": "Andrews & Arnold Ltd"})
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    home = tmp_path_factory.mktemp("networks")
    with RowEnricher(asn_db=_asn_database(home / "GeoLite2-ASN.mmdb")) as enricher:
        settings = build_lake(home, enricher)
    conn = duckdb.connect(str(settings.duckdb_path), read_only=True)
    conn.execute("SET TimeZone = 'UTC'")
    yield conn
    conn.close()


def test_each_network_of_an_hour_is_counted_and_classed(metrics):
    rows = metrics.execute(f"""
        SELECT asn, as_org, datacenter, requests, unique_ips, bot_requests
        FROM {NETWORKS.name} WHERE hour = $1 ORDER BY asn NULLS LAST
    """, [HOUR_A]).fetchall()

    assert rows == [
        (GOOGLE, "GOOGLE", True, 2, 1, 0),
        (ANDREWS, "Andrews & Arnold Ltd", False, 2, 1, 2),
        (None, None, None, 1, 1, 0),
    ]


def test_data_centre_share_counts_only_requests_with_asn_data(metrics):
    shares = metrics.execute(
        f"SELECT hour, datacenter_requests, requests_with_asn, requests, datacenter_share "
        f"FROM ({DATACENTER_SHARE_SQL}) ORDER BY hour").fetchall()
    traffic = dict(metrics.execute(f"SELECT hour, requests FROM {TRAFFIC.name}").fetchall())

    assert [(h, dc, known, total, share) for h, dc, known, total, share in shares] == [
        (HOUR_A, 2, 4, 5, 0.5),
        (HOUR_B, 3, 5, 6, 0.6),
    ]
    assert {h: total for h, _, _, total, _ in shares} == traffic


def test_without_asn_data_the_share_is_unknown(tmp_path):
    with RowEnricher() as enricher:
        settings = build_lake(tmp_path, enricher, (NETWORKS,))
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        shares = conn.execute(
            f"SELECT datacenter_requests, requests_with_asn, datacenter_share "
            f"FROM ({DATACENTER_SHARE_SQL})").fetchall()

    assert shares == [(None, None, None), (None, None, None)]


@pytest.mark.parametrize(("asn", "organisation", "expected"), [
    (16509, "AMAZON-02", True),
    (24940, "Hetzner Online GmbH", True),
    (64500, "Example Hosting Ltd", True),
    (64501, "Example Cloud Services", True),
    (3320, "Deutsche Telekom AG", False),
    (64502, "Cloudnetworks Broadband", False),
    (64503, None, False),
    (None, None, None),
])
def test_sql_and_python_class_networks_alike(asn, organisation, expected):
    in_sql = duckdb.connect().execute(
        f"SELECT {datacenter_sql('a', 'o')} FROM (SELECT $1::BIGINT AS a, $2::VARCHAR AS o)",
        [asn, organisation]).fetchone()[0]

    assert is_datacenter(asn, organisation) is expected
    assert in_sql is expected


def test_the_report_gives_the_share(metrics):
    answers = starter_answers(metrics)

    assert answers.networks == {"datacenter_requests": 5, "requests_with_asn": 9,
                                "datacenter_share": 0.5556}
    assert answers.to_json()["networks"]["datacenter_share"] == 0.5556
    assert ("Data-centre networks: 55.6% of the 9 requests with ASN data (5 requests)"
            in render_text(answers))
