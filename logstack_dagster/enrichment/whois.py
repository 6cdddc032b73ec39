"""Name the network behind a handful of client addresses, through RDAP, without ever hanging.

Used at metric time for the few addresses worth a name (the clients behind most non-200
answers), never per log line. Every answer is cached, in memory and optionally in a DuckDB
table, and a lookup that fails becomes a recorded ``failed`` answer instead of an error:
a metric run on a machine without internet must finish in seconds with ``unknown`` owners.

ipwhois does the RDAP query and parsing. Asked with ``bootstrap=True`` it sends one request
to the ARIN bootstrap service, which redirects to the registry in charge; an opener handler
rewrites that URL when another RDAP server is configured, so tests can serve their own.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import geoip2.database
import geoip2.errors
from ipwhois import IPWhois
from ipwhois.rdap import BOOTSTRAP_URL

from logstack_dagster.enrichment.geoip import ip_scope

log = logging.getLogger(__name__)

CACHE_TABLE = "whois_cache"

_CREATE_CACHE = f"""
CREATE TABLE IF NOT EXISTS {CACHE_TABLE} (
    ip VARCHAR PRIMARY KEY,
    asn BIGINT,
    asn_description VARCHAR,
    network_name VARCHAR,
    network_cidr VARCHAR,
    country VARCHAR,
    status VARCHAR NOT NULL,
    error VARCHAR,
    looked_up_at TIMESTAMPTZ NOT NULL
)
"""

_COLUMNS = (
    "ip",
    "asn",
    "asn_description",
    "network_name",
    "network_cidr",
    "country",
    "status",
    "error",
    "looked_up_at",
)

# ARIN's RDAP extension listing the origin AS numbers of a network. RDAP itself (RFC 9083)
# has no ASN field, and the other registries do not send one.
_ORIGIN_AS_KEY = "arin_originas0_originautnums"


@dataclass(frozen=True, slots=True)
class OwnerNetwork:
    """Who holds the network an address belongs to, as far as the registry says.

    ``status`` is ``ok`` (the registry answered), ``asn_db`` (the registry did not; the
    ASN and its holder come from the local ASN database, ``error`` says why the registry
    failed), ``failed`` (no usable answer; ``error`` says why) or ``not_public`` (private
    or reserved: never asked).
    """

    ip: str
    status: str
    asn: int | None = None
    asn_description: str | None = None
    network_name: str | None = None
    network_cidr: str | None = None
    country: str | None = None
    error: str | None = None
    looked_up_at: datetime | None = None

    @property
    def label(self) -> str:
        """A short name for reports: ``"AS15169 GOOGLE"``, ``"GOOGLE"`` or ``"unknown"``."""
        if self.status not in ("ok", "asn_db"):
            return "unknown"
        name = self.network_name or self.asn_description
        if self.asn is not None and name:
            return f"AS{self.asn} {name}"
        if self.asn is not None:
            return f"AS{self.asn}"
        return name or "unknown"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _RewriteBootstrap(urllib.request.BaseHandler):
    """Send requests meant for the ARIN bootstrap service to another RDAP base URL."""

    # Run before the HTTP handlers prepare the request, so they see the new host.
    handler_order = 100

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url

    def https_request(self, request: urllib.request.Request) -> urllib.request.Request:
        if request.full_url.startswith(BOOTSTRAP_URL + "/"):
            request.full_url = self._base_url + request.full_url[len(BOOTSTRAP_URL) :]
        return request

    http_request = https_request


class _Breaker:
    """Stops further queries once the server has failed several times without a success."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        with self._lock:
            return self._failures >= self._limit

    def record(self, success: bool) -> None:
        with self._lock:
            self._failures = 0 if success else self._failures + 1


class OwnerLookup:
    """Find the owner network of public addresses through RDAP, with caching and deadlines.

    ``timeout`` bounds one address's query in seconds; ``max_workers`` how many run at once;
    ``max_age`` how long a successful answer is reused, ``failure_max_age`` a failed one.
    ``rdap_url`` is the base URL the ``/ip/<address>`` queries go to instead of the ARIN
    bootstrap service (``BOOTSTRAP_URL``). ``proxy`` is an HTTP(S) proxy URL; proxy
    environment variables are ignored, so a stray ``HTTPS_PROXY`` cannot reroute queries,
    least of all ones meant for a local server. ``asn_db`` is a GeoIP2/GeoLite2 ASN
    database: an address the registry gives no answer for (offline, say) is named from it
    at once, as ``asn_db``; the failure is still what is cached, so it is asked again
    after ``failure_max_age``. ``clock`` returns the current aware time and exists for
    tests.
    """

    def __init__(
        self,
        timeout: float = 2.0,
        max_workers: int = 8,
        max_age: timedelta = timedelta(days=30),
        rdap_url: str | None = None,
        *,
        failure_max_age: timedelta = timedelta(minutes=10),
        proxy: str | None = None,
        asn_db: str | Path | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers!r}")
        if rdap_url is not None and urlsplit(rdap_url).scheme not in ("http", "https"):
            raise ValueError(f"rdap_url must be an http(s) URL, got {rdap_url!r}")

        self.timeout = timeout
        self.max_workers = max_workers
        self.max_age = max_age
        self.failure_max_age = failure_max_age
        self._base_url = (rdap_url or BOOTSTRAP_URL).rstrip("/")
        self._proxy = proxy
        self._clock = clock
        self._memory: dict[str, OwnerNetwork] = {}

        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {})
        ]
        if rdap_url is not None:
            handlers.append(_RewriteBootstrap(self._base_url))
        self._opener = urllib.request.build_opener(*handlers)
        self._asn_db = asn_db

    def lookup(self, ip: str, cache: duckdb.DuckDBPyConnection | None = None) -> OwnerNetwork:
        """Return the owner network of one address; see ``lookup_many``."""
        return self.lookup_many([ip], cache)[ip]

    def lookup_many(
        self, ips: Iterable[str], cache: duckdb.DuckDBPyConnection | None = None
    ) -> dict[str, OwnerNetwork]:
        """Return an ``OwnerNetwork`` for every address in ``ips``, keyed by the given text.

        Fresh answers come from memory, then from the ``whois_cache`` table of ``cache``
        (created if missing); the rest are queried in parallel and written back. Never
        raises for a lookup problem: it becomes a ``failed`` answer. When a refresh fails,
        the older successful answer is kept. Takes at most about ``timeout`` seconds per
        wave of ``max_workers`` addresses, and about ``timeout`` in all when the server
        cannot be reached.
        """
        now = self._clock()
        answers: dict[str, OwnerNetwork] = {}
        wanted: dict[str, list[str]] = {}
        for given in dict.fromkeys(ips):
            canonical = _canonical(given)
            if canonical is None:
                answers[given] = OwnerNetwork(
                    given, "failed", error=f"not an IP address: {given!r}", looked_up_at=now
                )
            elif ip_scope(canonical) != "public":
                answers[given] = OwnerNetwork(canonical, "not_public", looked_up_at=now)
            else:
                wanted.setdefault(canonical, []).append(given)

        if cache is not None:
            cache.execute(_CREATE_CACHE)
            self._load(cache, [ip for ip in wanted if not self._fresh(ip, now)])

        stale = [ip for ip in wanted if not self._fresh(ip, now)]
        if stale:
            self._refresh(stale, cache)
            log.info("RDAP asked about %d of %d public addresses", len(stale), len(wanted))

        fallback = self._from_asn_db(
            [ip for ip in wanted if self._memory[ip].status == "failed"])
        for canonical, given_forms in wanted.items():
            for given in given_forms:
                answers[given] = fallback.get(canonical) or self._memory[canonical]
        return answers

    def _from_asn_db(self, ips: list[str]) -> dict[str, OwnerNetwork]:
        """Answers from the ASN database for the failed ``ips`` it knows."""
        if not ips or self._asn_db is None:
            return {}
        found = {}
        with geoip2.database.Reader(str(self._asn_db)) as reader:
            for ip in ips:
                try:
                    network = reader.asn(ip)
                except (geoip2.errors.AddressNotFoundError, ValueError):
                    continue
                found[ip] = replace(self._memory[ip], status="asn_db",
                                    asn=network.autonomous_system_number,
                                    asn_description=network.autonomous_system_organization,
                                    network_cidr=str(network.network))
        return found

    def _refresh(self, ips: list[str], cache: duckdb.DuckDBPyConnection | None) -> None:
        """Query ``ips`` and remember the answers, keeping a good old one over a failure."""
        for ip, answer in self._query(ips).items():
            previous = self._memory.get(ip)
            if answer.status == "failed" and previous is not None and previous.status == "ok":
                log.warning("RDAP refresh of %s failed, keeping older answer: %s", ip, answer.error)
                continue
            self._memory[ip] = answer

        if cache is not None:
            self._store(cache, [self._memory[ip] for ip in ips])

    def _fresh(self, ip: str, now: datetime) -> bool:
        answer = self._memory.get(ip)
        if answer is None or answer.looked_up_at is None:
            return False
        max_age = self.max_age if answer.status == "ok" else self.failure_max_age
        return now - answer.looked_up_at < max_age

    def _load(self, cache: duckdb.DuckDBPyConnection, ips: list[str]) -> None:
        """Copy cached rows for ``ips`` into memory where they beat what memory holds."""
        if not ips:
            return
        rows = cache.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM {CACHE_TABLE} WHERE ip IN (SELECT unnest(?))",
            [ips],
        ).fetchall()
        for row in rows:
            stored = OwnerNetwork(**dict(zip(_COLUMNS, row, strict=True)))
            when: datetime = row[-1].astimezone(UTC)
            held = self._memory.get(stored.ip)
            if held is None or held.looked_up_at is None or held.looked_up_at < when:
                self._memory[stored.ip] = replace(stored, looked_up_at=when)

    def _store(self, cache: duckdb.DuckDBPyConnection, answers: list[OwnerNetwork]) -> None:
        if not answers:
            return
        placeholders = ", ".join("?" for _ in _COLUMNS)
        cache.executemany(
            f"INSERT OR REPLACE INTO {CACHE_TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
            [[getattr(answer, column) for column in _COLUMNS] for answer in answers],
        )

    def _query(self, ips: list[str]) -> dict[str, OwnerNetwork]:
        """Query the RDAP server for ``ips``; every address gets an answer, in bounded time."""
        started = self._clock()
        unreachable = self._unreachable()
        if unreachable is not None:
            log.warning(
                "RDAP server unreachable, %d addresses left unknown: %s", len(ips), unreachable
            )
            return {
                ip: OwnerNetwork(ip, "failed", error=unreachable, looked_up_at=started)
                for ip in ips
            }

        # After a wave of failures in a row the server is taken as down: the rest fail fast.
        breaker = _Breaker(limit=max(3, self.max_workers))
        budget = self.timeout * (math.ceil(len(ips) / self.max_workers) + 1)
        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="rdap")
        try:
            futures = {pool.submit(self._query_one, ip, breaker): ip for ip in ips}
            wait(futures, timeout=budget)
        finally:
            # Threads still blocked in a socket call end on their own socket timeout.
            pool.shutdown(wait=False, cancel_futures=True)

        answers = {}
        for future, ip in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                answers[ip] = future.result()
            else:
                answers[ip] = OwnerNetwork(
                    ip,
                    "failed",
                    looked_up_at=started,
                    error=f"no answer from {self._base_url} within {budget:g}s",
                )
        return answers

    def _query_one(self, ip: str, breaker: _Breaker) -> OwnerNetwork:
        if breaker.open:
            return OwnerNetwork(
                ip,
                "failed",
                looked_up_at=self._clock(),
                error=f"skipped: {self._base_url} failed repeatedly",
            )
        try:
            result = IPWhois(ip, timeout=self.timeout, proxy_opener=self._opener).lookup_rdap(
                bootstrap=True,
                inc_raw=True,
                inc_nir=False,
                retry_count=0,
                depth=0,
                root_ent_check=False,
                rate_limit_timeout=0,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded answer
            breaker.record(success=False)
            return OwnerNetwork(ip, "failed", error=self._describe(exc), looked_up_at=self._clock())

        breaker.record(success=True)
        return _owner_from_rdap(ip, result, self._clock())

    def _unreachable(self) -> str | None:
        """Say why the RDAP server (or proxy) cannot be reached, or None when it can.

        Name resolution is not covered by socket timeouts and can take tens of seconds on
        a machine without network, so the probe runs in a thread that is waited for at
        most ``timeout`` seconds.
        """
        target = urlsplit(self._proxy or self._base_url)
        host = target.hostname or ""
        port = target.port or (443 if target.scheme == "https" else 80)
        outcome: list[str | None] = []

        def probe() -> None:
            try:
                socket.create_connection((host, port), timeout=self.timeout).close()
                outcome.append(None)
            except OSError as exc:
                outcome.append(f"cannot connect to {host}:{port}: {exc}")

        worker = threading.Thread(target=probe, name="rdap-probe", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            return f"cannot connect to {host}:{port}: no answer within {self.timeout:g}s"
        return outcome[0]

    def _describe(self, exc: BaseException) -> str:
        """The error and its underlying cause, naming the server really asked."""
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__
        if cause is not None:
            text += f" ({type(cause).__name__}: {cause})"
        return text.replace(BOOTSTRAP_URL, self._base_url)


def _canonical(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except (ValueError, AttributeError):
        return None


def _owner_from_rdap(ip: str, result: dict[str, Any], now: datetime) -> OwnerNetwork:
    """Build an answer from ipwhois's ``lookup_rdap`` result (with ``inc_raw=True``)."""
    network = result.get("network") or {}
    raw = result.get("raw") or {}

    origins = raw.get(_ORIGIN_AS_KEY) or []
    asn = int(origins[0]) if origins and str(origins[0]).isdigit() else None

    return OwnerNetwork(
        ip=ip,
        status="ok",
        asn=asn,
        asn_description=_holder_name(result),
        network_name=network.get("name"),
        network_cidr=network.get("cidr"),
        country=network.get("country"),
        looked_up_at=now,
    )


def _holder_name(result: dict[str, Any]) -> str | None:
    """The registrant's name, else the first entity with a name."""
    objects = result.get("objects") or {}
    named = [
        (obj.get("roles") or [], (obj.get("contact") or {}).get("name")) for obj in objects.values()
    ]
    for roles, name in named:
        if name and "registrant" in roles:
            return name
    return next((name for _, name in named if name), None)
