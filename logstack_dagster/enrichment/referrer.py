"""Say where each request came from (its referrer) and whether it asked for a page.

A batch is a ``pyarrow.Table`` with the string columns ``referrer`` and ``path`` (the
target without its query), and optionally ``vhost``. As in ``geoip``, the work is done
over the batch's distinct values and spread back over the rows with ``index_in`` and
``take``; the host of a referrer is cut out with one vectorised regex, and each distinct
host is classified once and remembered.

``referrer_kind`` is one of:

- ``internal``: the referrer's host is one of the site's own hosts or below one
  (``site_hosts=("example.com",)`` covers ``www.example.com`` and ``shop.example.com``),
  or the row's own virtual host, or the referrer is a path without a host.
- ``search_engine``: a web search, named in ``search_engine``.
- ``social``: a social network, a forum or a link shortener of one.
- ``external``: any other host.
- ``none``: no referrer, or one without a host (``about:blank``, garbage).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

INTERNAL, EXTERNAL, SEARCH_ENGINE, SOCIAL, NONE = (
    "internal", "external", "search_engine", "social", "none")
REFERRER_KINDS = (INTERNAL, EXTERNAL, SEARCH_ENGINE, SOCIAL, NONE)

REFERRER_SCHEMA = pa.schema(
    [
        pa.field("referrer_domain", pa.string()),
        pa.field("referrer_kind", pa.string()),
        pa.field("search_engine", pa.string()),
        pa.field("is_static", pa.bool_()),
    ]
)
"""The columns ``ReferrerEnricher.enrich`` appends, in order.

``referrer_domain`` is the referrer's host in lower case without a leading ``www.``
(for an ``android-app://`` referrer, the app's package name). ``referrer_kind`` and
``is_static`` are never null.
"""

# The host of an absolute or protocol-relative URL: scheme, "//", optional user info.
_HOST = r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//(?:[^@/?#]*@)?(?P<host>\[[^\]/?#]*\]|[^:/?#]*)"

# Search engines by the host their result pages link from, after "www." is dropped.
# Google's other services (mail, docs, news) are not searches, so only the bare domain
# counts; Android's Google app sends its package name instead of a host.
SEARCH_ENGINES: tuple[tuple[str, str], ...] = (
    (r"google\.(?:com?\.)?[a-z]{2,3}|com\.google\.android\.googlequicksearchbox", "Google"),
    (r"(?:[a-z]{2}\.)?bing\.com", "Bing"),
    (r"(?:[a-z]{2}\.)?search\.yahoo\.(?:com|co\.jp|[a-z]{2})", "Yahoo"),
    (r"(?:html\.|lite\.)?duckduckgo\.com", "DuckDuckGo"),
    (r"yandex\.(?:ru|com|com\.tr|ua|by|kz|uz)|ya\.ru", "Yandex"),
    (r"(?:m\.)?baidu\.com", "Baidu"),
    (r"ecosia\.org", "Ecosia"),
    (r"startpage\.com", "Startpage"),
    (r"(?:lite\.)?qwant\.com", "Qwant"),
    (r"search\.brave\.com", "Brave Search"),
    (r"kagi\.com", "Kagi"),
    (r"mojeek\.com", "Mojeek"),
    (r"(?:m\.)?search\.naver\.com", "Naver"),
    (r"search\.seznam\.cz|seznam\.cz", "Seznam"),
    (r"(?:m\.)?sogou\.com", "Sogou"),
    (r"(?:m\.)?so\.com", "360 Search"),
    (r"search\.daum\.net", "Daum"),
    (r"coccoc\.com", "Coc Coc"),
    (r"ask\.com", "Ask"),
    (r"search\.aol\.com", "AOL"),
)

# Social networks and forums; a host matches one of these or any host below it.
SOCIAL_DOMAINS = frozenset({
    "facebook.com", "fb.com", "fb.me", "instagram.com", "threads.net", "whatsapp.com",
    "t.co", "twitter.com", "x.com", "linkedin.com", "lnkd.in", "reddit.com", "redd.it",
    "news.ycombinator.com", "youtube.com", "youtu.be", "tiktok.com", "pinterest.com",
    "pin.it", "tumblr.com", "quora.com", "vk.com", "ok.ru", "weibo.com", "bsky.app",
    "mastodon.social", "t.me", "telegram.org", "discord.com", "snapchat.com",
    "com.facebook.katana", "com.linkedin.android", "com.twitter.android",
    "com.reddit.frontpage", "org.telegram.messenger",
})

# What a page loads besides itself: styles, scripts, images, fonts, media. Documents a
# visitor asks for by name (.html, .php, .pdf) are not static in this sense.
STATIC_EXTENSIONS = frozenset({
    "css", "js", "mjs", "map", "wasm",
    "png", "jpg", "jpeg", "gif", "svg", "ico", "cur", "webp", "avif", "bmp", "tif", "tiff",
    "woff", "woff2", "ttf", "otf", "eot",
    "mp4", "m4v", "webm", "ogv", "mov", "mp3", "m4a", "ogg", "oga", "wav", "flac",
})
_EXTENSION = r"\.(?P<ext>[A-Za-z0-9]{1,5})$"


def normalize_host(host: str) -> str:
    """``host`` in lower case, without a port, a trailing dot or a leading ``www.``."""
    host = host.strip().lower()
    if host.startswith("[") and "]" in host:
        host = host[: host.index("]") + 1]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") else host


class ReferrerEnricher:
    """Classify referrers as internal, search, social or external, and paths as static.

    ``site_hosts`` are the site's own host names (``LOGSTACK_SITE_HOSTS``); each covers
    the hosts below it too. Without them only a referrer that names the row's own
    ``vhost``, or has no host, is internal.
    """

    def __init__(self, site_hosts: Iterable[str] = ()) -> None:
        self.site_hosts = tuple(sorted({normalize_host(h) for h in site_hosts if h.strip()}))
        self._engines = tuple((re.compile(p), name) for p, name in SEARCH_ENGINES)
        self._kinds: dict[str, tuple[str, str | None]] = {}

    def enrich(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with the columns of ``REFERRER_SCHEMA`` appended.

        ``table`` must have the string columns ``referrer`` and ``path``; a ``vhost``
        column, when there is one, marks referrers from the same host as internal.
        """
        for name in ("referrer", "path"):
            if name not in table.column_names:
                raise ValueError(f"table has no {name!r} column; its columns are "
                                 f"{table.column_names}")
        taken = [name for name in REFERRER_SCHEMA.names if name in table.column_names]
        if taken:
            raise ValueError(f"table already has referrer columns {taken}; enrich it only once")

        domain, kind, engine = self._referrers(table.column("referrer"))
        if "vhost" in table.column_names:
            kind = _same_host_internal(domain, kind, table.column("vhost"))
        is_static = _static(table.column("path"))
        for field, values in zip(REFERRER_SCHEMA, (domain, kind, engine, is_static), strict=True):
            table = table.append_column(field, values)
        return table

    def classify_host(self, domain: str | None) -> tuple[str, str | None]:
        """``(referrer_kind, search_engine)`` for a normalised referrer host, or None."""
        if not domain:
            return NONE, None
        known = self._kinds.get(domain)
        if known is None:
            known = self._kinds[domain] = self._classify(domain)
        return known

    def _classify(self, domain: str) -> tuple[str, str | None]:
        if _under(domain, self.site_hosts):
            return INTERNAL, None
        for pattern, name in self._engines:
            if pattern.fullmatch(domain):
                return SEARCH_ENGINE, name
        if _under(domain, SOCIAL_DOMAINS):
            return SOCIAL, None
        return EXTERNAL, None

    def _referrers(self, referrers: pa.ChunkedArray) -> tuple[pa.Array, ...]:
        """``referrer_domain``, ``referrer_kind`` and ``search_engine`` for every row."""
        # Three levels, each smaller than the last: rows, distinct referrers, their hosts.
        distinct = pc.unique(referrers)
        hosts = _hosts(distinct)
        distinct_hosts = pc.unique(hosts)
        answers = [self.classify_host(h) for h in distinct_hosts.to_pylist()]
        per_host = pc.index_in(hosts, value_set=distinct_hosts)
        kinds = pa.array([kind for kind, _ in answers], pa.string()).take(per_host)
        engines = pa.array([engine for _, engine in answers], pa.string()).take(per_host)

        # A bare path ("/shop?page=2") can only have come from the site itself.
        relative = pc.and_(pc.starts_with(distinct, "/"), pc.invert(pc.starts_with(distinct, "//")))
        kinds = pc.if_else(pc.fill_null(relative, False), INTERNAL, kinds)

        positions = pc.index_in(referrers, value_set=distinct)
        return hosts.take(positions), kinds.take(positions), engines.take(positions)


def _hosts(referrers: pa.Array) -> pa.Array:
    """Each referrer's host as ``normalize_host`` has it, or null when it names none."""
    hosts = pc.utf8_lower(pc.struct_field(pc.extract_regex(referrers, _HOST), "host"))
    hosts = pc.replace_substring_regex(hosts, r"^www\.|\.+$", "")
    return pc.if_else(pc.equal(hosts, ""), pa.scalar(None, pa.string()), hosts)


def _under(domain: str, hosts: Iterable[str]) -> bool:
    """Whether ``domain`` is one of ``hosts`` or a host below one of them."""
    return any(domain == h or domain.endswith("." + h) for h in hosts)


def _same_host_internal(domain: pa.Array, kind: pa.Array, vhost: pa.ChunkedArray) -> pa.Array:
    """``kind`` with every row whose referrer names the row's own virtual host internal."""
    if vhost.null_count == len(vhost):
        return kind
    own = pc.replace_substring_regex(pc.utf8_lower(vhost), r"^www\.", "")
    same = pc.fill_null(pc.equal(domain, own), False)
    return pc.if_else(same, INTERNAL, kind)


def _static(paths: pa.ChunkedArray) -> pa.Array:
    """Whether each path ends in the extension of a static asset; false without a path."""
    distinct = pc.unique(paths)
    extensions = pc.utf8_lower(pc.struct_field(pc.extract_regex(distinct, _EXTENSION), "ext"))
    static = pc.fill_null(pc.is_in(extensions, value_set=pa.array(sorted(STATIC_EXTENSIONS))),
                          False)
    return pc.fill_null(static.take(pc.index_in(paths, value_set=distinct)), False)
