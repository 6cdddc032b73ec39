"""Every per-row enrichment of the dataflow, applied to a batch in one call.

    GeoIP (place, network)  ->  user agent (human or bot, browser, bot name)
                            ->  referrer (where from) and static asset or page

Each stage appends its own columns and keeps its own per-distinct-value cache. GeoIP
answers are kept as Arrow columns here too (``DistinctCache``): ``GeoEnricher`` alone turns
each batch's distinct addresses into Python objects and back, which cost more than all the
other stages together. The workers of a process share one ``RowEnricher``: the GeoIP and
user-agent look-ups run only inside a ``DistinctCache``, which learns each value once for
all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import pyarrow as pa

from logstack_dagster.enrichment.distinct import DistinctCache
from logstack_dagster.enrichment.geoip import ENRICHED_SCHEMA, GeoEnricher
from logstack_dagster.enrichment.referrer import REFERRER_SCHEMA, ReferrerEnricher
from logstack_dagster.enrichment.useragent import USER_AGENT_SCHEMA, UserAgentEnricher

ENRICHMENT_SCHEMA = pa.schema([*ENRICHED_SCHEMA, *USER_AGENT_SCHEMA, *REFERRER_SCHEMA])
"""Every column ``RowEnricher.enrich`` appends, in order."""

# Distinct client addresses remembered between batches (about 100 bytes each).
_ADDRESSES = 200_000


class RowEnricher:
    """GeoIP, user-agent and referrer enrichment of parsed log rows.

    ``city_db`` and ``asn_db`` are GeoIP2 databases as for ``GeoEnricher`` (None: the
    bundled City database, no ASN); ``site_hosts`` the site's own host names, for telling
    internal referrers from external ones.
    """

    def __init__(
        self,
        city_db: str | Path | None = None,
        asn_db: str | Path | None = None,
        site_hosts: Iterable[str] = (),
    ) -> None:
        # The addresses are remembered below, so GeoEnricher's own cache needs little room.
        self.geo = GeoEnricher(city_db, asn_db, cache_size=1_000)
        self.places = DistinctCache("ip", ENRICHED_SCHEMA, self._look_up_places,
                                    max_size=_ADDRESSES)
        self.user_agents = UserAgentEnricher()
        self.referrers = ReferrerEnricher(site_hosts)

    def enrich(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with the columns of ``ENRICHMENT_SCHEMA`` appended.

        ``table`` needs the parser's columns ``ip``, ``user_agent``, ``referrer`` and
        ``path`` (``vhost`` is used when present).
        """
        table = self.places.apply(table)
        table = self.user_agents.enrich(table)
        return self.referrers.enrich(table)

    def _look_up_places(self, ips: pa.Array) -> pa.Table:
        return self.geo.enrich(pa.table({"ip": ips})).drop_columns(["ip"])

    def close(self) -> None:
        """Close the GeoIP databases."""
        self.geo.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
