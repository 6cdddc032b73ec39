"""Tell browsers from bots, and name both, for batches of parsed log rows.

A batch is a ``pyarrow.Table`` with a string column ``user_agent``. A site sees a few
thousand distinct user agents a day against millions of requests, so each distinct value
is classified once, its answer kept as Arrow columns (``DistinctCache``) and spread back
over the rows with ``index_in`` and ``take``.

Three sources decide, in this order:

1. ``BOTS``, our own table: the crawlers worth a name and a category, AI crawlers
   first among them, and the HTTP libraries scripts use.
2. ``crawlerdetect``, a maintained list of some 1,500 crawler patterns: it says "bot"
   for agents the table does not know; they get the category ``unknown_bot``.
3. ``ua-parser`` (uap-core's rules): browser, operating system and device. Its device
   family ``Spider`` marks a few more bots.

The new agents of a batch go through the first two together, on RE2 (``botscan``), and
get the answers they would get one at a time.

Every row gets a ``ua_class``:

- ``bot``: one of the sources above recognised a bot (``is_bot`` is true only here).
- ``human``: not a bot, and ua-parser recognised a browser or an operating system.
- ``empty``: no user agent at all, or ``-``.
- ``unknown``: something else, e.g. ``Mozilla/5.0`` alone or a made-up string. Such
  agents are often scripts in disguise, so metrics about people should count only
  ``human``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import NamedTuple

import pyarrow as pa
from crawlerdetect import CrawlerDetect
from ua_parser import OS, BasicResolver, Device, Domain, Parser, UserAgent, load_builtins

from logstack_dagster.enrichment.botscan import LONG_AGENT, BatchBotScan, Scan
from logstack_dagster.enrichment.distinct import DistinctCache

log = logging.getLogger(__name__)

HUMAN, BOT, EMPTY, UNKNOWN = "human", "bot", "empty", "unknown"
UA_CLASSES = (HUMAN, BOT, EMPTY, UNKNOWN)

SEARCH_ENGINE = "search_engine"
SEO_TOOL = "seo_tool"
AI_CRAWLER = "ai_crawler"
MONITOR = "monitor"
LIBRARY = "library"
UNKNOWN_BOT = "unknown_bot"
BOT_CATEGORIES = (SEARCH_ENGINE, SEO_TOOL, AI_CRAWLER, MONITOR, LIBRARY, UNKNOWN_BOT)

DEVICE_CLASSES = ("desktop", "mobile", "tablet", "bot", "other")

USER_AGENT_SCHEMA = pa.schema(
    [
        pa.field("ua_class", pa.string()),
        pa.field("is_bot", pa.bool_()),
        pa.field("bot_name", pa.string()),
        pa.field("bot_category", pa.string()),
        pa.field("browser_family", pa.string()),
        pa.field("browser_version", pa.string()),
        pa.field("os_family", pa.string()),
        pa.field("device_class", pa.string()),
    ]
)
"""The columns ``UserAgentEnricher.enrich`` appends, in order.

``ua_class``, ``is_bot`` and ``device_class`` are never null. ``bot_name`` and
``bot_category`` are set for bots only; ``browser_family`` and ``browser_version`` for
humans only, since a bot's browser is a disguise. ``os_family`` is what the agent claims.
"""


class Bot(NamedTuple):
    """One row of the bot table: a case-insensitive regex, the bot's name, its category."""

    pattern: str
    name: str
    category: str


# The first entry whose pattern is found in the agent wins, so a longer name comes before
# a name it contains (Applebot-Extended before Applebot). Google-Extended and
# Applebot-Extended are robots.txt tokens that the crawlers do not send as their agent;
# they are here so that an agent naming them is still put where its owner says it belongs.
BOTS: tuple[Bot, ...] = tuple(
    Bot(*entry)
    for entry in (
        # Crawlers that gather text for language models, or fetch pages for an assistant.
        (r"GPTBot", "GPTBot", AI_CRAWLER),
        (r"ChatGPT-User", "ChatGPT-User", AI_CRAWLER),
        (r"OAI-SearchBot", "OAI-SearchBot", AI_CRAWLER),
        (r"ClaudeBot", "ClaudeBot", AI_CRAWLER),
        (r"Claude-Web", "Claude-Web", AI_CRAWLER),
        (r"Claude-User", "Claude-User", AI_CRAWLER),
        (r"Claude-SearchBot", "Claude-SearchBot", AI_CRAWLER),
        (r"anthropic-ai", "anthropic-ai", AI_CRAWLER),
        (r"PerplexityBot", "PerplexityBot", AI_CRAWLER),
        (r"Perplexity-User", "Perplexity-User", AI_CRAWLER),
        (r"Bytespider", "Bytespider", AI_CRAWLER),
        (r"CCBot", "CCBot", AI_CRAWLER),
        (r"Google-Extended", "Google-Extended", AI_CRAWLER),
        (r"Applebot-Extended", "Applebot-Extended", AI_CRAWLER),
        (r"Amazonbot", "Amazonbot", AI_CRAWLER),
        (r"meta-externalagent", "meta-externalagent", AI_CRAWLER),
        (r"meta-externalfetcher", "meta-externalfetcher", AI_CRAWLER),
        (r"FacebookBot", "FacebookBot", AI_CRAWLER),
        (r"cohere-training-data-crawler", "cohere-training-data-crawler", AI_CRAWLER),
        (r"cohere-ai", "cohere-ai", AI_CRAWLER),
        (r"MistralAI-User", "MistralAI-User", AI_CRAWLER),
        (r"DuckAssistBot", "DuckAssistBot", AI_CRAWLER),
        (r"YouBot", "YouBot", AI_CRAWLER),
        (r"AI2Bot", "AI2Bot", AI_CRAWLER),
        (r"Diffbot", "Diffbot", AI_CRAWLER),
        (r"Timpibot", "Timpibot", AI_CRAWLER),
        (r"ImagesiftBot", "ImagesiftBot", AI_CRAWLER),
        (r"PanguBot", "PanguBot", AI_CRAWLER),
        (r"Webzio-Extended|omgili", "Webz.io", AI_CRAWLER),
        # Search engines' own crawlers.
        (r"Googlebot|Google-InspectionTool|Storebot-Google", "Googlebot", SEARCH_ENGINE),
        (r"AdsBot-Google|Mediapartners-Google", "Google AdsBot", SEARCH_ENGINE),
        (r"bingbot|BingPreview|msnbot|adidxbot", "Bingbot", SEARCH_ENGINE),
        (r"Applebot", "Applebot", SEARCH_ENGINE),
        (r"Yandex(?:Bot|Images|Video|MobileBot|AccessibilityBot|Favicons|Metrika|News)",
         "YandexBot", SEARCH_ENGINE),
        (r"Baiduspider", "Baiduspider", SEARCH_ENGINE),
        (r"DuckDuckBot", "DuckDuckBot", SEARCH_ENGINE),
        (r"Yahoo! Slurp", "Yahoo Slurp", SEARCH_ENGINE),
        (r"PetalBot", "PetalBot", SEARCH_ENGINE),
        (r"SeznamBot", "SeznamBot", SEARCH_ENGINE),
        (r"Sogou[ \w]*spider", "Sogou", SEARCH_ENGINE),
        (r"360Spider", "360Spider", SEARCH_ENGINE),
        (r"Yeti/|NaverBot", "Naver Yeti", SEARCH_ENGINE),
        (r"coccocbot", "coccocbot", SEARCH_ENGINE),
        (r"MojeekBot", "MojeekBot", SEARCH_ENGINE),
        (r"Qwantify|QwantBot", "Qwantbot", SEARCH_ENGINE),
        (r"SeekportBot", "SeekportBot", SEARCH_ENGINE),
        (r"Exabot", "Exabot", SEARCH_ENGINE),
        (r"YisouSpider", "YisouSpider", SEARCH_ENGINE),
        # Crawlers of SEO and marketing tools.
        (r"AhrefsBot|AhrefsSiteAudit", "AhrefsBot", SEO_TOOL),
        (r"SemrushBot|SiteAuditBot|SplitSignalBot", "SemrushBot", SEO_TOOL),
        (r"MJ12bot", "MJ12bot", SEO_TOOL),
        (r"DotBot|rogerbot", "Moz", SEO_TOOL),
        (r"Screaming Frog SEO Spider", "Screaming Frog", SEO_TOOL),
        (r"serpstatbot", "serpstatbot", SEO_TOOL),
        (r"BLEXBot", "BLEXBot", SEO_TOOL),
        (r"DataForSeoBot", "DataForSeoBot", SEO_TOOL),
        (r"barkrowler", "Barkrowler", SEO_TOOL),
        (r"SEOkicks", "SEOkicks", SEO_TOOL),
        (r"linkdexbot", "linkdexbot", SEO_TOOL),
        (r"Seobility", "Seobility", SEO_TOOL),
        # Uptime and health checks.
        (r"UptimeRobot", "UptimeRobot", MONITOR),
        (r"Pingdom", "Pingdom", MONITOR),
        (r"StatusCake", "StatusCake", MONITOR),
        (r"Site24x7", "Site24x7", MONITOR),
        (r"NewRelicPinger", "New Relic", MONITOR),
        (r"DatadogSynthetics|Datadog Agent", "Datadog", MONITOR),
        (r"Better ?Uptime|BetterStack", "Better Stack", MONITOR),
        (r"Uptime-Kuma", "Uptime Kuma", MONITOR),
        (r"Amazon-Route53-Health-Check-Service", "Route 53 health check", MONITOR),
        (r"ELB-HealthChecker", "ELB health check", MONITOR),
        (r"GoogleStackdriverMonitoring|GoogleHC/", "Google Cloud health check", MONITOR),
        (r"kube-probe", "kube-probe", MONITOR),
        (r"Blackbox Exporter", "Prometheus blackbox", MONITOR),
        (r"Checkly", "Checkly", MONITOR),
        (r"Freshping", "Freshping", MONITOR),
        (r"HetrixTools", "HetrixTools", MONITOR),
        (r"check_http|monitoring-plugins|Nagios", "Nagios", MONITOR),
        (r"Zabbix", "Zabbix", MONITOR),
        # Link previews fetched when someone shares a URL. The category list has no place
        # for them, so they are unknown_bot, but with a name.
        (r"facebookexternalhit|facebookcatalog", "facebookexternalhit", UNKNOWN_BOT),
        (r"Twitterbot", "Twitterbot", UNKNOWN_BOT),
        (r"LinkedInBot", "LinkedInBot", UNKNOWN_BOT),
        (r"Slackbot", "Slackbot", UNKNOWN_BOT),
        (r"Discordbot", "Discordbot", UNKNOWN_BOT),
        (r"TelegramBot", "TelegramBot", UNKNOWN_BOT),
        (r"^WhatsApp/", "WhatsApp", UNKNOWN_BOT),
        (r"Pinterestbot", "Pinterestbot", UNKNOWN_BOT),
        (r"redditbot", "redditbot", UNKNOWN_BOT),
        # HTTP libraries and command-line clients: scripts, feeds, tests, scrapers.
        (r"^curl(?:/|$)", "curl", LIBRARY),
        (r"^Wget(?:/|$)", "Wget", LIBRARY),
        (r"python-requests(?:/|$)", "python-requests", LIBRARY),
        (r"python-httpx/", "httpx", LIBRARY),
        (r"aiohttp/", "aiohttp", LIBRARY),
        (r"^Python-urllib/|^Python/[0-9.]+ urllib", "Python urllib", LIBRARY),
        (r"Scrapy/", "Scrapy", LIBRARY),
        (r"^Go-http-client/", "Go net/http", LIBRARY),
        (r"^Java/|Apache-HttpClient/|^Jakarta Commons-HttpClient", "Java HTTP client", LIBRARY),
        (r"okhttp/", "OkHttp", LIBRARY),
        (r"^axios/", "axios", LIBRARY),
        (r"node-fetch|^undici", "Node.js fetch", LIBRARY),
        (r"^libwww-perl/", "libwww-perl", LIBRARY),
        (r"GuzzleHttp/", "Guzzle", LIBRARY),
        (r"^PostmanRuntime/", "Postman", LIBRARY),
        (r"^insomnia/", "Insomnia", LIBRARY),
        (r"^HTTPie/", "HTTPie", LIBRARY),
        (r"WindowsPowerShell/", "PowerShell", LIBRARY),
        (r"^Ruby|^Faraday v", "Ruby HTTP client", LIBRARY),
        (r"^Dart/", "Dart HTTP client", LIBRARY),
        (r"^reqwest/", "reqwest", LIBRARY),
        (r"HeadlessChrome/", "HeadlessChrome", LIBRARY),
        (r"PhantomJS/", "PhantomJS", LIBRARY),
    )
)

# ua-parser's families for "no idea", and the operating systems of phones and of
# computers. Anything else with an OS (consoles, TVs, watches) is "other".
_UNKNOWN_FAMILY = "Other"
_MOBILE_OS = frozenset({
    "iOS", "Android", "Windows Phone", "Windows Mobile", "BlackBerry OS", "BlackBerry Tablet OS",
    "KaiOS", "Symbian OS", "Symbian^3", "Firefox OS", "HarmonyOS", "Sailfish", "Ubuntu Touch",
    "Bada", "MeeGo", "Maemo",
})
_DESKTOP_OS = frozenset({
    "Windows", "Mac OS X", "Mac OS", "macOS", "Linux", "Ubuntu", "Debian", "Fedora", "Red Hat",
    "SUSE", "openSUSE", "Mandriva", "Gentoo", "Slackware", "CentOS", "Linux Mint", "Arch Linux",
    "Chrome OS", "Chromecast", "FreeBSD", "OpenBSD", "NetBSD", "Solaris", "SunOS",
})
_TABLET_DEVICES = re.compile(r"iPad|Kindle|Tablet|Nexus (?:7|9|10)\b|\bTab\b", re.IGNORECASE)

# How much of an agent the bot tests that run on Python's regex engine read (about 0.3 s).
SLOW_AGENT = 2_048

# Text in which no character has a meaning of its own in a regex.
_PLAIN = re.compile(r"[\w !/-]+")

# A product token that calls itself a bot, spider or crawler, not inside a URL.
_BOT_TOKEN = re.compile(
    r"(?<![\w./:@+-])([A-Za-z][\w.-]*?(?:bot|spider|crawler)[\w-]*)(?=[/;\s)]|$)",
    re.IGNORECASE,
)


class UserAgentInfo(NamedTuple):
    """What is known about one user agent; field order follows ``USER_AGENT_SCHEMA``."""

    ua_class: str
    is_bot: bool
    bot_name: str | None
    bot_category: str | None
    browser_family: str | None
    browser_version: str | None
    os_family: str | None
    device_class: str


_EMPTY_INFO = UserAgentInfo(EMPTY, False, None, None, None, None, None, "other")


def _best_resolver():
    """uap-core's rules on the Rust engine of ``ua-parser-rs`` when it is installed.

    The Rust engine classifies a new agent about 13 times faster than the pure Python
    one (50 µs against 660 µs), which matters for a log of many distinct agents.
    """
    try:
        from ua_parser import load_lazy_builtins
        from ua_parser.regex import Resolver
    except ImportError:
        log.info("ua-parser-rs is not installed; user agents are parsed in pure Python")
        return BasicResolver(load_builtins())
    return Resolver(load_lazy_builtins())


class UserAgentEnricher:
    """Classify the user agents of log rows: human or bot, which browser, which bot.

    ``cache_size`` bounds how many distinct agents are remembered between batches. One
    instance may serve several threads through ``enrich``, whose cache lets one of them
    classify at a time; ``classify`` itself is not safe to call from two threads at once.
    """

    def __init__(self, *, cache_size: int = 100_000) -> None:
        self._parser = Parser(_best_resolver())
        self._crawlers = CrawlerDetect()
        self._bots = tuple((_matcher(b.pattern), b) for b in BOTS)
        self._batch_scan = BatchBotScan([(_needles(b.pattern), b.pattern) for b in BOTS])
        self._cache = DistinctCache("user_agent", USER_AGENT_SCHEMA, self._look_up,
                                    max_size=cache_size)

    @property
    def cache_len(self) -> int:
        """How many distinct agents the cache holds now."""
        return len(self._cache)

    def enrich(self, table: pa.Table) -> pa.Table:
        """Return ``table`` with the columns of ``USER_AGENT_SCHEMA`` appended.

        ``table`` must have a string column ``user_agent``; a null there is an empty agent.
        """
        return self._cache.apply(table)

    def classify(self, user_agent: str | None) -> UserAgentInfo:
        """Return what is known about one agent (not cached: ``enrich`` is for batches)."""
        if user_agent is None:
            return _EMPTY_INFO
        text = user_agent.strip()
        # A long agent is tested on RE2 even alone, as it is in a batch of any size.
        scan = self._batch_scan.scan([text])[0] if len(text) > LONG_AGENT else None
        return self._classify(text, scan)

    def _look_up(self, agents: pa.Array) -> pa.Table:
        """One row of ``USER_AGENT_SCHEMA`` for each of ``agents``, in order."""
        texts = [None if a is None else a.strip() for a in agents.to_pylist()]
        scans = self._batch_scan.scan(texts)
        infos = [_EMPTY_INFO if text is None else self._classify(text, scan)
                 for text, scan in zip(texts, scans, strict=True)]
        columns = [pa.array([info[i] for info in infos], field.type)
                   for i, field in enumerate(USER_AGENT_SCHEMA)]
        return pa.Table.from_arrays(columns, schema=USER_AGENT_SCHEMA)

    def _classify(self, user_agent: str, scan: Scan | None = None) -> UserAgentInfo:
        text = user_agent.strip()
        if text in ("", "-", '"-"'):
            return _EMPTY_INFO

        parsed = self._parser(text, Domain.ALL)
        os_family = _family(parsed.os)
        bot = self._bot(text, parsed.user_agent, parsed.device, scan)
        if bot is not None:
            return UserAgentInfo(BOT, True, bot.name, bot.category, None, None, os_family, "bot")

        browser = _family(parsed.user_agent)
        if browser is None and os_family is None:
            return UserAgentInfo(UNKNOWN, False, None, None, None, None, None, "other")
        return UserAgentInfo(HUMAN, False, None, None, browser, _version(parsed.user_agent),
                             os_family, _device_class(text, os_family, parsed.device))

    def _bot(self, text: str, agent: UserAgent | None, device: Device | None,
             scan: Scan | None = None) -> Bot | None:
        """The bot behind ``text`` as our table names it, a nameless one, or None.
        ``scan``, when given, is what a batch pass already found out about ``text``."""
        # Python's regex engine takes minutes over an agent of 50,000 characters: the tests
        # it runs read the start of an agent only (known limit: a bot named further in is
        # missed when the agent is not plain ASCII, which RE2 reads whole).
        probe = text[:SLOW_AGENT]
        if scan is not None and scan.scanned:
            if scan.table_entry is not None:
                return self._bots[scan.table_entry][1]
        else:
            lowered = probe.lower()
            for found, bot in self._bots:
                if found(probe, lowered):
                    return bot

        spider = device is not None and device.family == "Spider"
        if scan is not None and scan.scanned and scan.crawler_match is not None:
            crawler, matched = True, scan.crawler_match
        elif scan is None or scan.may_crawl:
            crawler = self._crawlers.is_crawler(probe)
            matched = self._crawlers.get_matches() if crawler else None
        else:
            crawler, matched = False, None
        if not (crawler or spider):
            return None
        return Bot("", _bot_name(probe, agent, spider, matched), UNKNOWN_BOT)


def _matcher(pattern: str) -> Callable[[str, str], bool]:
    """A test of ``(text, text.lower())`` for ``pattern``, found anywhere, in any case.

    Most entries are plain names; a substring test on the lowered text finds those four
    times faster than a regex, and every agent of a browser is tried against them all.
    """
    needles = _needles(pattern)
    if needles is not None:
        return lambda _text, lowered: any(n in lowered for n in needles)
    compiled = re.compile(pattern, re.IGNORECASE)
    return lambda text, _lowered: compiled.search(text) is not None


def _needles(pattern: str) -> tuple[str, ...] | None:
    """The lower-cased names a plain pattern (``a|b|c``) stands for; None for a regex."""
    needles = tuple(n.lower() for n in pattern.split("|"))
    return needles if all(_PLAIN.fullmatch(n) for n in needles) else None


def _family(found: UserAgent | OS | None) -> str | None:
    if found is None or found.family == _UNKNOWN_FAMILY:
        return None
    return found.family


def _version(agent: UserAgent | None) -> str | None:
    """``major.minor`` (``major`` alone when there is no minor), or None."""
    if agent is None or not agent.major:
        return None
    return f"{agent.major}.{agent.minor}" if agent.minor else agent.major


def _device_class(text: str, os_family: str | None, device: Device | None) -> str:
    """``tablet``, ``mobile``, ``desktop`` or ``other`` for an agent that is not a bot."""
    device_text = " ".join(filter(None, (device.family, device.brand))) if device else ""
    if _TABLET_DEVICES.search(device_text):
        return "tablet"
    # Android tablets leave "Mobile" out of their agent; Android phones put it in.
    if os_family == "Android" and "Mobile" not in text:
        return "tablet"
    if os_family in _MOBILE_OS or "Mobi" in text:
        return "mobile"
    if os_family in _DESKTOP_OS or (os_family or "").startswith("Windows"):
        return "desktop"
    return "other"


def _bot_name(text: str, agent: UserAgent | None, spider: bool, matched: str | None) -> str:
    """A name for a bot our table does not know: its own token, else the best guess."""
    token = _BOT_TOKEN.search(text)
    if token:
        return token.group(1)
    family = _family(agent)
    if spider and family is not None:
        return family
    return matched or "unknown"
