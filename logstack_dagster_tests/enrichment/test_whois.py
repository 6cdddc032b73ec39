"""OwnerLookup against an RDAP server of the test's own on 127.0.0.1; nothing else is asked."""

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

from logstack_dagster.enrichment import whois
from logstack_dagster.enrichment.whois import OwnerLookup, OwnerNetwork


def rdap_network(ip: str) -> dict:
    """A minimal RFC 9083 'ip network' object, with ARIN's origin-AS extension for 8.8.x."""
    prefix = ip.rsplit(".", 1)[0]
    google = ip.startswith("8.8.")
    answer = {
        "objectClassName": "ip network",
        "rdapConformance": ["rdap_level_0", "arin_originas0"],
        "handle": f"NET-{prefix.replace('.', '-')}-0-1",
        "startAddress": f"{prefix}.0",
        "endAddress": f"{prefix}.255",
        "ipVersion": "v4",
        "name": "GOOGLE" if google else "EXAMPLE-NET",
        "type": "DIRECT ALLOCATION",
        "country": "US" if google else "NL",
        "entities": [
            {
                "objectClassName": "entity",
                "handle": "GOGL" if google else "ORG-EX1-RIPE",
                "roles": ["registrant"],
                "vcardArray": [
                    "vcard",
                    [
                        ["version", {}, "text", "4.0"],
                        ["fn", {}, "text", "Google LLC" if google else "Example B.V."],
                        ["kind", {}, "text", "org"],
                    ],
                ],
            }
        ],
    }
    if google:
        answer["arin_originas0_originautnums"] = [15169]
    return answer


class RdapServer:
    """An RDAP server whose behaviour the test sets: answer, fail with 500, or hang."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.delay = 0.0
        self.requests: Counter[str] = Counter()
        self.release = threading.Event()
        self.in_flight = self.most_at_once = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests[self.path] += 1
                    server.in_flight += 1
                    server.most_at_once = max(server.most_at_once, server.in_flight)
                self.counted = True
                try:
                    self._answer()
                finally:
                    self._done()

            def _done(self) -> None:
                # Before the answer leaves: once the client has it, its thread may ask again
                # while this handler is still finishing.
                if self.counted:
                    self.counted = False
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self) -> None:
                if server.mode == "hang":
                    server.release.wait(10)
                    return
                time.sleep(server.delay)
                self._done()
                if server.mode == "error":
                    self.send_error(500, "registry on fire")
                    return
                body = json.dumps(rdap_network(self.path.rsplit("/", 1)[1])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rdap"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def total(self) -> int:
        return sum(self.requests.values())


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2019, 12, 2, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rdap() -> Iterator[RdapServer]:
    server = RdapServer()
    server.thread.start()
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/rdap"


def test_success_names_asn_holder_and_network(rdap: RdapServer, clock: Clock) -> None:
    lookup = OwnerLookup(
        timeout=2, max_workers=4, max_age=timedelta(days=1), rdap_url=rdap.url, clock=clock
    )

    owner = lookup.lookup("8.8.8.8")

    assert owner == OwnerNetwork(
        ip="8.8.8.8",
        status="ok",
        asn=15169,
        asn_description="Google LLC",
        network_name="GOOGLE",
        network_cidr="8.8.8.0/24",
        country="US",
        looked_up_at=clock.now,
    )
    assert owner.label == "AS15169 GOOGLE"
    assert rdap.requests == {"/rdap/ip/8.8.8.8": 1}


def test_network_without_asn_is_labelled_by_name(rdap: RdapServer) -> None:
    owner = OwnerLookup(rdap_url=rdap.url).lookup("185.1.2.3")

    assert (owner.asn, owner.network_cidr, owner.country) == (None, "185.1.2.0/24", "NL")
    assert owner.label == "EXAMPLE-NET"


def test_second_lookup_is_served_from_memory(rdap: RdapServer) -> None:
    lookup = OwnerLookup(rdap_url=rdap.url)

    first = lookup.lookup_many(["8.8.8.8", "8.8.4.4"])
    second = lookup.lookup_many(["8.8.8.8", "8.8.4.4", "8.8.8.8"])

    assert first == second
    assert rdap.requests == {"/rdap/ip/8.8.8.8": 1, "/rdap/ip/8.8.4.4": 1}


def test_duckdb_cache_serves_a_new_process(
    rdap: RdapServer, cache: duckdb.DuckDBPyConnection, clock: Clock
) -> None:
    OwnerLookup(rdap_url=rdap.url, clock=clock).lookup_many(["8.8.8.8"], cache)

    again = OwnerLookup(rdap_url=rdap.url, clock=clock).lookup_many(["8.8.8.8"], cache)

    assert again["8.8.8.8"].label == "AS15169 GOOGLE"
    assert again["8.8.8.8"].looked_up_at == clock.now
    assert rdap.total() == 1
    assert cache.execute(
        "SELECT ip, asn, asn_description, network_name, network_cidr, country, status, error "
        "FROM whois_cache"
    ).fetchall() == [("8.8.8.8", 15169, "Google LLC", "GOOGLE", "8.8.8.0/24", "US", "ok", None)]


def test_answers_are_refreshed_after_max_age(
    rdap: RdapServer, cache: duckdb.DuckDBPyConnection, clock: Clock
) -> None:
    lookup = OwnerLookup(rdap_url=rdap.url, max_age=timedelta(hours=1), clock=clock)
    lookup.lookup("8.8.8.8", cache)

    clock.now += timedelta(minutes=59)
    lookup.lookup("8.8.8.8", cache)
    assert rdap.total() == 1

    clock.now += timedelta(minutes=2)
    refreshed = lookup.lookup("8.8.8.8", cache)
    assert rdap.total() == 2
    assert refreshed.looked_up_at == clock.now
    assert cache.execute("SELECT looked_up_at FROM whois_cache").fetchone()[0] == clock.now


def test_server_error_is_recorded_as_failed_not_raised(
    rdap: RdapServer, cache: duckdb.DuckDBPyConnection
) -> None:
    rdap.mode = "error"

    owner = OwnerLookup(rdap_url=rdap.url).lookup("8.8.8.8", cache)

    assert owner.status == "failed"
    assert owner.label == "unknown"
    assert "error code 500" in owner.error and rdap.url in owner.error
    status, error = cache.execute("SELECT status, error FROM whois_cache").fetchone()
    assert (status, error) == ("failed", owner.error)


def test_hanging_server_gives_unknown_within_the_timeout(rdap: RdapServer) -> None:
    rdap.mode = "hang"
    lookup = OwnerLookup(timeout=0.5, rdap_url=rdap.url)

    began = time.monotonic()
    owner = lookup.lookup("8.8.8.8")

    assert time.monotonic() - began < 1.5
    assert owner.status == "failed" and owner.label == "unknown"
    assert "timed out" in owner.error


def test_hanging_server_fails_many_addresses_in_about_one_timeout(rdap: RdapServer) -> None:
    rdap.mode = "hang"
    lookup = OwnerLookup(timeout=0.5, max_workers=4, rdap_url=rdap.url)
    ips = [f"8.8.{n}.8" for n in range(20)]

    began = time.monotonic()
    owners = lookup.lookup_many(ips)

    assert time.monotonic() - began < 2.0
    assert {owner.label for owner in owners.values()} == {"unknown"}
    # One wave reached the server; the rest were cut short once it looked down.
    assert rdap.total() <= 8


def test_closed_port_gives_unknown_fast() -> None:
    lookup = OwnerLookup(timeout=2, rdap_url=closed_port_url())
    ips = [f"8.8.{n}.8" for n in range(20)]

    began = time.monotonic()
    owners = lookup.lookup_many(ips)

    assert time.monotonic() - began < 0.5
    assert {owner.label for owner in owners.values()} == {"unknown"}
    assert "cannot connect to 127.0.0.1" in owners["8.8.0.8"].error


def test_unresolvable_server_gives_unknown_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Name resolution without network can block for tens of seconds, beyond socket timeouts.
    def stuck_resolver(*args: object, **kwargs: object) -> None:
        time.sleep(5)
        raise OSError("resolver gave up")

    monkeypatch.setattr(whois.socket, "create_connection", stuck_resolver)
    lookup = OwnerLookup(timeout=0.5, rdap_url=closed_port_url())

    began = time.monotonic()
    owners = lookup.lookup_many([f"8.8.{n}.8" for n in range(20)])

    assert time.monotonic() - began < 1.0
    assert {owner.label for owner in owners.values()} == {"unknown"}
    assert "no answer within 0.5s" in owners["8.8.0.8"].error


def test_failures_are_retried_after_failure_max_age(rdap: RdapServer, clock: Clock) -> None:
    rdap.mode = "error"
    lookup = OwnerLookup(rdap_url=rdap.url, failure_max_age=timedelta(minutes=10), clock=clock)
    lookup.lookup("8.8.8.8")
    lookup.lookup("8.8.8.8")
    assert rdap.total() == 1

    rdap.mode = "answer"
    clock.now += timedelta(minutes=11)

    assert lookup.lookup("8.8.8.8").label == "AS15169 GOOGLE"
    assert rdap.total() == 2


def test_failed_refresh_keeps_the_older_answer(
    rdap: RdapServer, cache: duckdb.DuckDBPyConnection, clock: Clock
) -> None:
    lookup = OwnerLookup(rdap_url=rdap.url, max_age=timedelta(hours=1), clock=clock)
    first = lookup.lookup("8.8.8.8", cache)

    rdap.mode = "error"
    clock.now += timedelta(hours=2)
    again = lookup.lookup("8.8.8.8", cache)

    assert again == first
    assert cache.execute("SELECT status FROM whois_cache").fetchone()[0] == "ok"


def test_private_and_reserved_addresses_are_never_asked(rdap: RdapServer) -> None:
    owners = OwnerLookup(rdap_url=rdap.url).lookup_many(
        ["10.0.0.1", "192.168.1.10", "127.0.0.1", "fe80::1", "192.0.2.1"]
    )

    assert {owner.status for owner in owners.values()} == {"not_public"}
    assert {owner.label for owner in owners.values()} == {"unknown"}
    assert rdap.total() == 0


def test_garbage_is_failed_with_the_bad_value(rdap: RdapServer) -> None:
    owner = OwnerLookup(rdap_url=rdap.url).lookup("8.8.8.888")

    assert owner.status == "failed"
    assert owner.error == "not an IP address: '8.8.8.888'"
    assert rdap.total() == 0


def test_lookups_run_in_parallel_up_to_max_workers(rdap: RdapServer) -> None:
    # Counted at the server rather than timed, so a busy machine cannot fail the test.
    rdap.delay = 0.3
    lookup = OwnerLookup(timeout=5, max_workers=4, rdap_url=rdap.url)

    owners = lookup.lookup_many([f"8.8.{n}.8" for n in range(20)])

    assert {owner.status for owner in owners.values()} == {"ok"}
    assert rdap.total() == 20
    assert 2 <= rdap.most_at_once <= 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be positive seconds, got 0"),
        ({"max_workers": 0}, "max_workers must be at least 1, got 0"),
        ({"rdap_url": "ftp://127.0.0.1/"}, "rdap_url must be an http\\(s\\) URL"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OwnerLookup(**kwargs)


def _asn_database(path) -> str:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoLite2-ASN",
                                    ipv4_compatible=True, int_type="u32")
    writer.insert_network(IPSet(["8.8.8.0/24"]), {
        "autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"})
    writer.to_db_file(str(path))
    return str(path)


def test_offline_falls_back_to_the_asn_database_at_once(tmp_path, clock: Clock) -> None:
    lookup = OwnerLookup(timeout=2, rdap_url=closed_port_url(), clock=clock,
                         asn_db=_asn_database(tmp_path / "asn.mmdb"))
    cache = duckdb.connect(str(tmp_path / "cache.duckdb"))

    began = time.monotonic()
    owners = lookup.lookup_many(["8.8.8.8", "1.1.1.1"], cache)

    assert time.monotonic() - began < 0.5
    known, unknown = owners["8.8.8.8"], owners["1.1.1.1"]
    assert (known.status, known.label, known.network_cidr) == (
        "asn_db", "AS15169 GOOGLE", "8.8.8.0/24")
    assert "cannot connect to 127.0.0.1" in known.error
    assert (unknown.status, unknown.label) == ("failed", "unknown")
    # The cache records the registry's failure, so the registry is asked again later.
    assert cache.execute("SELECT ip, status FROM whois_cache ORDER BY ip").fetchall() == [
        ("1.1.1.1", "failed"), ("8.8.8.8", "failed")]


def test_a_registry_answer_beats_the_asn_database(rdap: RdapServer, tmp_path) -> None:
    lookup = OwnerLookup(timeout=2, rdap_url=rdap.url,
                         asn_db=_asn_database(tmp_path / "asn.mmdb"))

    owner = lookup.lookup("8.8.8.8")

    assert (owner.status, owner.label) == ("ok", "AS15169 GOOGLE")
    assert owner.network_name == "GOOGLE" and owner.country == "US"
