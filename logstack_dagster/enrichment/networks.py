"""Which autonomous systems are data centres: clouds, hosting and server providers.

Traffic from a data centre is scripts, crawlers, proxies and VPNs far more often than
people at a browser, so its share is a quick check on how human a site's audience is.
The answer needs ASN data (a GeoLite2-ASN database, see ``GeoEnricher``); without it the
share is unknown rather than zero.

An AS counts as a data centre when its number is in ``DATACENTER_ASNS`` or its
organisation's name says hosting, cloud, server or data centre. The list names the large
providers by number because their names do not say so (``AMAZON-02``, ``OVH SAS``).
Known gap: smaller hosting providers whose names say nothing are missed; a maintained
list (for example an ipcat-style range file) would find them, once one is shipped.
"""

from __future__ import annotations

import re

DATACENTER_ASNS: frozenset[int] = frozenset({
    16509, 14618, 8987,           # Amazon Web Services
    15169, 396982, 19527,         # Google, Google Cloud
    8075, 8068, 8069,             # Microsoft, Azure
    31898,                        # Oracle Cloud
    36351,                        # IBM Cloud (SoftLayer)
    14061, 62567,                 # DigitalOcean
    16276,                        # OVHcloud
    24940,                        # Hetzner
    63949,                        # Akamai Connected Cloud (Linode)
    20473,                        # Vultr (Choopa)
    51167,                        # Contabo
    12876,                        # Scaleway
    197540,                       # netcup
    8560,                         # IONOS
    60781, 28753,                 # Leaseweb
    9009,                         # M247
    53667,                        # FranTech (BuyVM)
    13335,                        # Cloudflare
    45102, 37963,                 # Alibaba Cloud
    132203, 45090,                # Tencent Cloud
    136907, 55990,                # Huawei Cloud
})

# Words in an organisation's name that mark a hosting business; whole words only, so a
# name that merely contains one inside a longer word is left out.
DATACENTER_NAME = re.compile(
    r"\b(?:hosting|host(?:er|ers)?|cloud|data ?cent(?:er|re)s?|datacenters?|servers?|"
    r"vps|colocation|colo|dedicated)\b",
    re.IGNORECASE,
)


def is_datacenter(asn: int | None, organisation: str | None) -> bool | None:
    """True for a data centre's AS, False for another AS, None without ASN data."""
    if asn is None and not organisation:
        return None
    if asn is not None and asn in DATACENTER_ASNS:
        return True
    return bool(organisation and DATACENTER_NAME.search(organisation))


def datacenter_sql(asn: str = "asn", organisation: str = "as_org") -> str:
    """A DuckDB expression equal to ``is_datacenter`` over two columns of a query."""
    numbers = ", ".join(str(n) for n in sorted(DATACENTER_ASNS))
    # DuckDB's regexp_matches takes RE2 syntax, which has \b and (?i) like Python's.
    pattern = "(?i)" + DATACENTER_NAME.pattern.replace("'", "''")
    return (f"CASE WHEN {asn} IS NULL AND coalesce({organisation}, '') = '' THEN NULL "
            f"WHEN {asn} IN ({numbers}) THEN true "
            f"ELSE coalesce(regexp_matches({organisation}, '{pattern}'), false) END")
