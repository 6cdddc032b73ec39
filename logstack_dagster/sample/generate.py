"""Generate realistic Apache access logs, so the product needs no copied production logs.

The sample has the shape the metrics care about: a few thousand paths with Zipf-like
popularity, a client population about 2 % the size of the line count, browsers on desktop
and mobile next to crawlers and scripts, each from address blocks of the countries they
really use, a real site's status and size mix, a daily traffic curve, and a small share of
the odd lines every real server writes. The same seed always gives the same bytes.

Speed comes from drawing in bulk: the site, the clients and the lookup tables are built
once, then each block of lines takes its random choices with one ``Random.choices`` call
per field instead of one call per line.
"""

from __future__ import annotations

import gzip
import ipaddress
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

from logstack_dagster.sample import catalog

DEFAULT_START = datetime(2019, 12, 2, tzinfo=UTC)
FORMATS = ("combined", "common")

_BLOCK = 50_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Share of clients by kind, and how much busier one client of the kind is than a person.
_CLIENT_KINDS = (("human", 0.86, 1.0), ("crawler", 0.06, 6.0), ("tool", 0.08, 2.0))
_IPV6_SHARE = 0.08
_HTTP2_SHARE = 0.55

# Status mix per kind of path, in percent. Static files are often revalidated (304);
# scanners probing for admin pages meet 404s and the odd 403.
_STATUS_MIX: dict[str, tuple[tuple[int, float], ...]] = {
    "page": ((200, 92.5), (304, 2.5), (301, 1.5), (302, 2.5), (403, 0.3), (500, 0.5), (503, 0.2)),
    "gone": ((404, 85), (410, 5), (301, 10)),
    "meta": ((200, 95), (304, 5)),
    "asset": ((200, 72), (304, 25), (404, 2), (206, 1)),
    "image": ((200, 78), (304, 19), (404, 3)),
    "api": (
        (200, 82),
        (201, 3),
        (204, 3),
        (400, 3),
        (401, 4),
        (404, 1),
        (429, 2),
        (500, 1.5),
        (503, 0.5),
    ),
    "probe": ((404, 92), (403, 8)),
}

# Body sizes of the server's own error and redirect pages; None is logged as "-".
_FIXED_SIZES: dict[int, int | None] = {
    204: None,
    304: None,
    301: 235,
    302: 219,
    400: 226,
    401: 381,
    403: 199,
    404: 1254,
    410: 1254,
    429: 162,
    500: 531,
    503: 299,
}

# Path kind mix per client kind: people load pages and what the pages embed, crawlers mostly
# pages, scripts the API and whatever a vulnerability scanner tries.
_PATH_MIX: dict[str, dict[str, float]] = {
    "human": {"page": 0.45, "asset": 0.38, "image": 0.14, "api": 0.03},
    "crawler": {"page": 0.80, "meta": 0.06, "image": 0.10, "asset": 0.04},
    "tool": {"page": 0.28, "meta": 0.02, "api": 0.40, "probe": 0.30},
}

_ODD_KINDS = (("timeout", 40), ("tls", 30), ("truncated", 25), ("empty", 5))
_TLS_HELLO = r"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xa4\x1f\x9c\x07"
_USERS = ("alice", "bob", "ops", "deploy")
_TABLE = 1000  # resolution of the per-line lookup tables, in draws per table


@dataclass(frozen=True, slots=True)
class _Path:
    text: str
    kind: str
    size: int
    post_share: float
    statuses: str  # key of _STATUS_MIX


@dataclass(frozen=True, slots=True)
class _Client:
    ip: str
    kind: str
    user: str
    agent: str
    protocol: str


def generate_lines(
    count: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    hours: float = 24,
    fmt: str = "combined",
    odd_share: float = 0.02,
    ip_share: float = 0.02,
    tz: tzinfo | None = None,
) -> Iterator[bytes]:
    """Yield ``count`` access-log lines, without line terminators.

    Lines cover ``hours`` from the aware datetime ``start``, in near time order, stamped in
    ``tz`` (default: ``start``'s own zone). ``fmt`` is ``"combined"`` or ``"common"``.
    About ``odd_share`` of the lines are the malformed kind real servers write (empty
    request with 408, TLS handshake bytes with 400, a truncated line, an empty line); all
    others are valid in ``fmt``. The number of distinct client addresses is about
    ``ip_share * count``. The same arguments always give the same lines.
    """
    if count < 0:
        raise ValueError(f"count must be zero or more, got {count!r}")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"start must be timezone-aware, got {start.isoformat()!r}")
    if not hours > 0:
        raise ValueError(f"hours must be positive, got {hours!r}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {FORMATS}")
    if not 0 <= odd_share < 1:
        raise ValueError(f"odd_share must be in [0, 1), got {odd_share!r}")
    if not 0 < ip_share <= 1:
        raise ValueError(f"ip_share must be in (0, 1], got {ip_share!r}")

    return _lines(count, seed, start, hours, fmt, odd_share, ip_share, tz or start.tzinfo)


def write_log(path: str | Path, count: int, **kw: Any) -> int:
    """Write ``count`` generated lines to ``path`` (gzip-compressed when it ends in ``.gz``).

    Takes the keyword arguments of ``generate_lines``; returns the number of lines written.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    written = 0
    with opener(path, "wb") as out:
        for line in generate_lines(count, **kw):
            out.write(line + b"\n")
            written += 1
    return written


def _lines(
    count: int,
    seed: int,
    start: datetime,
    hours: float,
    fmt: str,
    odd_share: float,
    ip_share: float,
    zone: tzinfo,
) -> Iterator[bytes]:
    rng = random.Random(seed)

    paths = _build_site(rng)
    clients, client_weights = _build_clients(rng, max(1, round(count * ip_share)))
    client_cum = list(accumulate(client_weights))
    path_pools = {kind: _path_pool(paths, kind) for kind in _PATH_MIX}
    status_tables = {kind: _table(mix) for kind, mix in _STATUS_MIX.items()}
    internal = [catalog.SITE + p.text for p in _popular(rng, paths, "page", 256)]
    external = _table(catalog.EXTERNAL_REFERRERS, size=256)
    odd_lines = set(rng.sample(range(count), round(count * odd_share)))
    odd_kinds = _table(_ODD_KINDS)
    stamps = _Stamps(zone)
    times = _times(rng, count, start, hours, zone)

    for first in range(0, count, _BLOCK):
        size = min(_BLOCK, count - first)
        picked = rng.choices(clients, cum_weights=client_cum, k=size)
        drawn = _draw_paths(rng, picked, path_pools)
        dice = [rng.random() for _ in range(4 * size)]

        for n, client in enumerate(picked):
            path = next(drawn[client.kind])
            roll_status, roll_size, roll_method, roll_referrer = dice[4 * n : 4 * n + 4]
            stamp = stamps.text(next(times))

            method = "GET"
            if path.post_share and roll_method < path.post_share:
                method = "POST"
            elif client.kind != "human" and roll_method > 0.97:
                method = "HEAD"

            status = status_tables[path.statuses][int(roll_status * _TABLE)]
            body = _body_size(status, path, method, roll_size)
            request = f"{method} {path.text} {client.protocol}"
            line = f'{client.ip} - {client.user} [{stamp}] "{request}" {status} {body}'
            if fmt == "combined":
                referrer = _referrer(client, path, roll_referrer, internal, external)
                line = f'{line} "{referrer}" "{client.agent}"'

            if first + n in odd_lines:
                line = _odd_line(rng, odd_kinds, client, stamp, line, fmt)
            yield line.encode()


def _body_size(status: int, path: _Path, method: str, roll: float) -> str:
    """The %b field: bytes of body sent, "-" for none."""
    if method == "HEAD":
        return "-"
    if status in _FIXED_SIZES:
        fixed = _FIXED_SIZES[status]
        return "-" if fixed is None else str(fixed)
    if status == 206:
        return str(max(1, int(path.size * roll)))
    if path.kind == "page":
        # Pages are rendered per request (ads, CSRF tokens), so their size wobbles a little.
        return str(int(path.size * (0.97 + 0.06 * roll)))
    return str(path.size)


def _referrer(
    client: _Client, path: _Path, roll: float, internal: list[str], external: list[str]
) -> str:
    if client.kind != "human":
        return "-"
    if path.kind != "page":
        return internal[int(roll * len(internal))]
    if roll < 0.40:
        return "-"
    if roll < 0.75:
        return internal[int((roll - 0.40) / 0.35 * len(internal))]
    return external[int((roll - 0.75) / 0.25 * len(external))]


def _odd_line(
    rng: random.Random, kinds: list[str], client: _Client, stamp: str, line: str, fmt: str
) -> str:
    """Turn a normal line into one of the malformed lines real servers write."""
    kind = kinds[int(rng.random() * _TABLE)]
    tail = ' "-" "-"' if fmt == "combined" else ""
    if kind == "timeout":
        # A client opened a connection and never sent a request.
        return f'{client.ip} - - [{stamp}] "-" 408 -{tail}'
    if kind == "tls":
        # A TLS handshake sent to the plain-HTTP port; Apache escapes the bytes.
        return f'{client.ip} - - [{stamp}] "{_TLS_HELLO}" 400 226{tail}'
    if kind == "truncated":
        return line[: rng.randrange(8, len(line) - 1)]
    return ""


def _build_site(rng: random.Random) -> list[_Path]:
    """A site map of about 3,000 paths: pages, static files, images, API calls, probes.

    About 4 % of the blog posts are gone: links to them live on in search engines and
    other sites, and they are where a real site's 404s come from.
    """
    words, actions = catalog.TOPIC_WORDS, catalog.ACTION_WORDS
    pages = [
        "/",
        "/pricing",
        "/docs",
        "/blog",
        "/about",
        "/login",
        "/signup",
        "/contact",
        "/changelog",
        "/careers",
        "/security",
        "/status",
    ]
    pages += [
        f"/blog/{year}/{a}-{w}" for year in (2017, 2018, 2019) for a in actions for w in words
    ]
    pages += [
        f"/docs/{w}/{topic}"
        for w in words
        for topic in (
            "overview",
            "install",
            "configure",
            "reference",
            "troubleshooting",
            "faq",
            "examples",
            "limits",
        )
    ]
    pages += [f"/integrations/{w}" for w in words] + [f"/blog/tag/{w}" for w in words]
    pages += [f"/blog?page={n}" for n in range(2, 40)]
    pages += [f"/search?q={a}+{b}" for a in words for b in words[:12] if a != b]
    pages += [
        f"/?utm_source={s}&utm_medium={m}&utm_campaign=launch-{n}"
        for s in ("newsletter", "twitter", "linkedin")
        for m in ("email", "social")
        for n in range(1, 6)
    ]

    assets = [
        f"/static/{name}.{rng.getrandbits(32):08x}.{ext}"
        for name, ext in (
            ("css/app", "css"),
            ("js/app", "js"),
            ("js/vendor", "js"),
            ("js/charts", "js"),
            ("css/docs", "css"),
            ("js/search", "js"),
        )
    ]
    assets += [
        "/favicon.ico",
        "/static/img/logo.svg",
        "/static/fonts/inter-var.woff2",
        "/apple-touch-icon.png",
        "/manifest.json",
    ]
    images = [f"/images/{w}/{n:03d}.png" for w in words for n in range(40)]
    images += [f"/images/team/{n:02d}.jpg" for n in range(40)]
    api = [f"/api/v1/{w}?page={n}" for w in words for n in range(1, 6)]
    api += [f"/api/v1/{w}/{n}" for w in words[:8] for n in range(100, 110)]

    site: list[_Path] = []
    for text in pages:
        post = 0.3 if text in ("/login", "/signup", "/contact") else 0.0
        gone = text.startswith("/blog/2") and rng.random() < 0.04
        size = _log_normal(rng, 18_000, 0.5)
        site.append(_Path(text, "page", size, post, "gone" if gone else "page"))
    site += [
        _Path("/robots.txt", "meta", 131, 0.0, "meta"),
        _Path("/sitemap.xml", "meta", 48_213, 0.0, "meta"),
    ]
    site += [_Path(t, "asset", _log_normal(rng, 45_000, 0.9), 0.0, "asset") for t in assets]
    site += [_Path(t, "image", _log_normal(rng, 40_000, 1.0), 0.0, "image") for t in images]
    site += [_Path(t, "api", _log_normal(rng, 1_500, 0.8), 0.2, "api") for t in api]
    site += [_Path(t, "probe", 0, 0.0, "probe") for t in catalog.PROBE_PATHS]
    return site


def _log_normal(rng: random.Random, median: float, sigma: float) -> int:
    return max(40, int(rng.lognormvariate(math.log(median), sigma)))


def _path_pool(site: list[_Path], client_kind: str) -> tuple[list[_Path], list[float]]:
    """The paths one kind of client asks for, with cumulative Zipf-like weights.

    Within a path kind the n-th path in site order is asked for about 1/n as often as the
    first, so the home page, the main stylesheet and script lead, as on a real site.
    """
    chosen: list[_Path] = []
    weights: list[float] = []
    for path_kind, share in _PATH_MIX[client_kind].items():
        members = [p for p in site if p.kind == path_kind]
        zipf = [1.0 / rank for rank in range(1, len(members) + 1)]
        total = sum(zipf)
        chosen += members
        weights += [share * w / total for w in zipf]
    return chosen, list(accumulate(weights))


def _popular(rng: random.Random, site: list[_Path], kind: str, k: int) -> list[_Path]:
    members = [p for p in site if p.kind == kind]
    return rng.choices(members, weights=[1.0 / r for r in range(1, len(members) + 1)], k=k)


def _draw_paths(
    rng: random.Random,
    picked: list[_Client],
    pools: dict[str, tuple[list[_Path], list[float]]],
) -> dict[str, Iterator[_Path]]:
    """Draw all paths of a block at once, one bulk draw per client kind."""
    needed = dict.fromkeys(pools, 0)
    for client in picked:
        needed[client.kind] += 1
    return {
        kind: iter(rng.choices(pools[kind][0], cum_weights=pools[kind][1], k=needed[kind]))
        for kind in pools
    }


def _table(mix: Sequence[tuple[Any, float]], size: int = _TABLE) -> list[Any]:
    """Expand weighted outcomes into a list of ``size`` entries to index with a uniform."""
    total = sum(weight for _, weight in mix)
    bounds = list(accumulate(weight / total for _, weight in mix))
    table = []
    for slot in range(size):
        position = (slot + 0.5) / size
        table.append(next(v for (v, _), b in zip(mix, bounds, strict=True) if position < b))
    return table


def _build_clients(rng: random.Random, n: int) -> tuple[list[_Client], list[float]]:
    """``n`` clients with distinct addresses (where their blocks allow) and their weights."""
    kinds = rng.choices(
        [kind for kind, _, _ in _CLIENT_KINDS], weights=[s for _, s, _ in _CLIENT_KINDS], k=n
    )
    busy = {kind: factor for kind, _, factor in _CLIENT_KINDS}
    networks: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    taken: set[str] = set()

    clients: list[_Client] = []
    for kind in kinds:
        cidr, user, agent, protocol = _new_client(rng, kind)
        if cidr not in networks:
            networks[cidr] = ipaddress.ip_network(cidr)

        # A crawler's few /24s can run out of fresh addresses; then clients share one.
        ip = _address_in(rng, networks[cidr])
        for _ in range(5):
            if ip not in taken:
                break
            ip = _address_in(rng, networks[cidr])
        taken.add(ip)
        clients.append(_Client(ip, kind, user, agent, protocol))

    # A few clients make most of the requests: weight by a Zipf-like law of a random rank.
    ranks = list(range(1, n + 1))
    rng.shuffle(ranks)
    weights = [busy[c.kind] / rank**0.8 for c, rank in zip(clients, ranks, strict=True)]
    return clients, weights


def _new_client(rng: random.Random, kind: str) -> tuple[str, str, str, str]:
    """Pick the traits of a client of ``kind``: (CIDR to draw its address from, user,
    user agent, protocol)."""
    if kind == "crawler":
        crawler = _pick(rng, catalog.CRAWLERS, [c.weight for c in catalog.CRAWLERS])
        network = _pick(rng, crawler.networks, [n.weight for n in crawler.networks])
        return network.cidr, "-", crawler.user_agent, "HTTP/1.1"

    if kind == "tool":
        network = _pick(rng, catalog.HOSTING_V4, [n.weight for n in catalog.HOSTING_V4])
        agent = _pick(rng, catalog.TOOL_AGENTS, [w for _, w in catalog.TOOL_AGENTS])[0]
        return network.cidr, "-", agent, "HTTP/1.1"

    blocks = catalog.RESIDENTIAL_V6 if rng.random() < _IPV6_SHARE else catalog.RESIDENTIAL_V4
    network = _pick(rng, blocks, [n.weight for n in blocks])
    agent = _pick(rng, catalog.BROWSER_AGENTS, [w for _, w in catalog.BROWSER_AGENTS])[0]
    protocol = "HTTP/2.0" if rng.random() < _HTTP2_SHARE else "HTTP/1.1"
    user = rng.choice(_USERS) if rng.random() < 0.01 else "-"
    return network.cidr, user, agent, protocol


def _pick(rng: random.Random, items: Sequence[Any], weights: list[float]) -> Any:
    return rng.choices(items, weights=weights)[0]


def _address_in(rng: random.Random, block: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    # Skip the first and last address: network and broadcast addresses send no requests.
    return str(block[rng.randrange(1, block.num_addresses - 1)])


def _times(
    rng: random.Random, count: int, start: datetime, hours: float, zone: tzinfo
) -> Iterator[float]:
    """Epoch seconds for ``count`` lines over the window, following a daily traffic curve.

    The window is cut into quarter hours; each gets lines in proportion to how busy that
    local time of day is (peak mid-afternoon, trough before dawn). Within a quarter the
    lines are spread evenly plus up to a second of jitter, since Apache stamps a request
    when it starts but writes it when it ends.
    """
    begin = start.timestamp()
    end = begin + hours * 3600
    edges = [begin + q * 900.0 for q in range(math.ceil(hours * 4))] + [end]

    weights = []
    for low, high in pairwise(edges):
        local = datetime.fromtimestamp((low + high) / 2, zone)
        hour = local.hour + local.minute / 60
        weights.append((high - low) * (1 + 0.6 * math.cos(2 * math.pi * (hour - 15) / 24)))
    total = sum(weights)

    done = 0
    cumulative = 0.0
    for low, high, weight in zip(edges, edges[1:], weights, strict=False):
        cumulative += weight
        upto = count if high == end else round(count * cumulative / total)
        span = upto - done
        for n in range(span):
            yield min(low + (n + rng.random()) / span * (high - low) + rng.random(), end - 0.001)
        done = upto


class _Stamps:
    """Format epoch seconds as Apache's ``%t`` text, once per distinct second."""

    # Jitter sends neighbouring lines back and forth across a second, so remember a few
    # recent seconds rather than only the last one.
    _KEEP = 4096

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._texts: dict[int, str] = {}

    def text(self, when: float) -> str:
        second = int(when)
        text = self._texts.get(second)
        if text is None:
            if len(self._texts) >= self._KEEP:
                self._texts.clear()
            text = self._texts[second] = self._format(second)
        return text

    def _format(self, second: int) -> str:
        moment = datetime.fromtimestamp(second, self._zone)
        minutes = int((moment.utcoffset() or timedelta(0)).total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return (
            f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} "
            f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
        )
