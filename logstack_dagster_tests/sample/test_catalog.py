import ipaddress
import random

import pytest

from logstack_dagster.enrichment.geoip import GeoEnricher, ip_scope
from logstack_dagster.sample import catalog

NETWORKS = [
    *catalog.RESIDENTIAL_V4,
    *catalog.RESIDENTIAL_V6,
    *catalog.HOSTING_V4,
    *(network for crawler in catalog.CRAWLERS for network in crawler.networks),
]


@pytest.fixture(scope="module")
def geo() -> GeoEnricher:
    with GeoEnricher() as enricher:
        yield enricher


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.cidr)
def test_network_is_where_the_catalog_says(geo: GeoEnricher, network: catalog.Network) -> None:
    import pyarrow as pa

    block = ipaddress.ip_network(network.cidr)
    rng = random.Random(network.cidr)
    ips = [str(block[rng.randrange(1, block.num_addresses - 1)]) for _ in range(100)]

    countries = geo.enrich(pa.table({"ip": ips})).column("country").to_pylist()

    assert all(ip_scope(ip) == "public" for ip in ips)
    assert countries.count(network.country) >= 90, (network, countries)


def test_every_browser_agent_is_distinct_and_unquoted() -> None:
    agents = [agent for agent, _ in catalog.BROWSER_AGENTS]

    assert len(set(agents)) == len(agents)
    assert not any('"' in agent for agent in agents + [c.user_agent for c in catalog.CRAWLERS])
