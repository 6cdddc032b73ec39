"""The cast of a generated sample: client networks, user agents and the site's pages.

Everything here is plain data. ``generate.py`` draws from it; the tests check the networks
against the bundled GeoLite2-City database, so each network's country is a claim the
database confirms rather than a guess.
"""

from __future__ import annotations

from typing import NamedTuple


class Network(NamedTuple):
    """An address block clients are drawn from, and the country GeoLite2 places it in."""

    cidr: str
    country: str
    weight: float


# Broadband and mobile operators, weighted roughly like the audience of an English-language
# product: a large US share, then Europe and Asia. Every block resolves to its country in
# the December 2019 GeoLite2-City database for at least 90 % of its addresses.
RESIDENTIAL_V4: tuple[Network, ...] = (
    Network("73.0.0.0/8", "US", 14),
    Network("71.160.0.0/11", "US", 6),
    Network("66.190.0.0/15", "US", 3),
    Network("99.0.0.0/10", "US", 5),
    Network("99.224.0.0/11", "CA", 3),
    Network("70.24.0.0/13", "CA", 2),
    Network("79.192.0.0/10", "DE", 5),
    Network("88.64.0.0/12", "DE", 3),
    Network("86.128.0.0/10", "GB", 5),
    Network("82.0.0.0/14", "GB", 2),
    Network("90.0.0.0/10", "FR", 3),
    Network("82.64.0.0/14", "FR", 2),
    Network("77.160.0.0/12", "NL", 2),
    Network("83.32.0.0/11", "ES", 2),
    Network("79.0.0.0/11", "IT", 2),
    Network("83.0.0.0/14", "PL", 1),
    Network("78.64.0.0/12", "SE", 1),
    Network("95.24.0.0/13", "RU", 1),
    Network("117.192.0.0/10", "IN", 4),
    Network("59.88.0.0/13", "IN", 2),
    Network("126.0.0.0/8", "JP", 3),
    Network("153.128.0.0/9", "JP", 2),
    Network("211.32.0.0/13", "KR", 1),
    Network("113.64.0.0/10", "CN", 1),
    Network("36.64.0.0/11", "ID", 1),
    Network("120.144.0.0/12", "AU", 2),
    Network("177.0.0.0/14", "BR", 2),
    Network("189.0.0.0/11", "BR", 2),
    Network("187.128.0.0/12", "MX", 2),
)

RESIDENTIAL_V6: tuple[Network, ...] = (
    Network("2601::/20", "US", 5),
    Network("2003::/19", "DE", 2),
    Network("2a02:8108::/32", "DE", 1),
    Network("2a01:cb00::/24", "FR", 2),
)

# Hosting providers, where scripts and ad-hoc tools run from.
HOSTING_V4: tuple[Network, ...] = (
    Network("3.80.0.0/12", "US", 5),
    Network("88.198.0.0/16", "DE", 2),
    Network("178.62.0.0/17", "GB", 1),
)


class Crawler(NamedTuple):
    """A well-known crawler: its user agent and the blocks it really crawls from."""

    user_agent: str
    networks: tuple[Network, ...]
    weight: float


CRAWLERS: tuple[Crawler, ...] = (
    Crawler(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        (Network("66.249.64.0/20", "US", 4), Network("2001:4860:4801::/48", "US", 1)),
        10,
    ),
    Crawler(
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/119.0.6045.199 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        (Network("66.249.64.0/20", "US", 1),),
        6,
    ),
    Crawler(
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        (
            Network("157.55.39.0/24", "US", 1),
            Network("40.77.167.0/24", "US", 1),
            Network("207.46.13.0/24", "US", 1),
        ),
        6,
    ),
    Crawler(
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        (Network("54.36.148.0/22", "FR", 1),),
        4,
    ),
    Crawler(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
        (Network("20.171.206.0/24", "US", 1),),
        3,
    ),
    Crawler(
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)",
        (Network("34.192.0.0/12", "US", 1),),
        3,
    ),
    Crawler(
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        (Network("5.255.253.0/24", "RU", 1),),
        2,
    ),
    Crawler(
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        (Network("185.191.171.0/24", "NL", 1),),
        2,
    ),
    Crawler(
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Mobile Safari/537.36 "
        "(compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        (Network("114.119.128.0/19", "SG", 1),),
        1,
    ),
)

# Scripts: monitors, scrapers, someone's cron job.
TOOL_AGENTS: tuple[tuple[str, float], ...] = (
    ("curl/7.68.0", 4),
    ("curl/8.5.0", 2),
    ("python-requests/2.22.0", 4),
    ("python-requests/2.31.0", 2),
    ("Go-http-client/1.1", 3),
    ("Wget/1.20.3 (linux-gnu)", 1),
    ("python-httpx/0.27.0", 1),
    ("okhttp/4.9.0", 1),
)

_CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.{b} Safari/537.36"
)
_CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.{b} Safari/537.36"
)
_CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.{b} Safari/537.36"
)
_CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android {a}; {m}) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.{b} Mobile Safari/537.36"
)
_EDGE_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/70.0.3538.102 Safari/537.36 Edge/18.{b}"
)
_FIREFOX = "Mozilla/5.0 ({os}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
_FIREFOX_ANDROID = "Mozilla/5.0 (Android {a}; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0"
_SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_1) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{v} Safari/605.1.15"
)
_SAFARI_IOS = (
    "Mozilla/5.0 ({d} OS {i} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{v} Mobile/15E148 Safari/604.1"
)


def _browser_agents() -> tuple[tuple[str, float], ...]:
    """Browser user agents of late 2019 with a weight close to their share of visits."""
    agents: list[tuple[str, float]] = []
    chrome = (("78", "3904.108", 3), ("79", "3945.79", 4), ("77", "3865.120", 1))
    for version, build, weight in chrome:
        agents.append((_CHROME_WIN.format(v=version, b=build), 6 * weight))
        agents.append((_CHROME_MAC.format(v=version, b=build), 2 * weight))
        agents.append((_CHROME_LINUX.format(v=version, b=build), 0.4 * weight))
        for android, model in (("10", "Pixel 3"), ("9", "SM-G960F"), ("8.0.0", "SM-A520F")):
            agents.append((_CHROME_ANDROID.format(a=android, m=model, v=version, b=build), weight))
    for version, weight in (("70", 3), ("71", 4)):
        for os_name in ("Windows NT 10.0; Win64; x64", "X11; Ubuntu; Linux x86_64"):
            agents.append((_FIREFOX.format(os=os_name, v=version), weight))
        agents.append((_FIREFOX.format(os="Macintosh; Intel Mac OS X 10.15", v=version), 1))
        agents.append((_FIREFOX_ANDROID.format(a="9", v=version), 0.5))
    for build, weight in (("17763", 2), ("18362", 3)):
        agents.append((_EDGE_WIN.format(b=build), weight))
    for version, weight in (("13.0.3", 4), ("12.1.2", 1)):
        agents.append((_SAFARI_MAC.format(v=version), weight))
    ios = (("13_3", "13.0.4", 8), ("13_2_3", "13.0.3", 6), ("12_4_1", "12.1.2", 2))
    for ios_version, version, weight in ios:
        for device, share in (("iPhone; CPU iPhone", 1.0), ("iPad; CPU", 0.25)):
            agent = _SAFARI_IOS.format(d=device, i=ios_version, v=version)
            agents.append((agent, weight * share))
    return tuple(agents)


BROWSER_AGENTS: tuple[tuple[str, float], ...] = _browser_agents()

SITE = "https://www.example.com"

# Where visitors come from when they do not come from the site itself.
EXTERNAL_REFERRERS: tuple[tuple[str, float], ...] = (
    ("https://www.google.com/", 30),
    ("https://www.bing.com/", 4),
    ("https://duckduckgo.com/", 2),
    ("https://www.google.de/", 2),
    ("https://www.google.co.uk/", 2),
    ("https://t.co/", 2),
    ("https://news.ycombinator.com/", 1),
    ("https://www.reddit.com/", 1),
    ("https://github.com/", 1),
    ("https://www.linkedin.com/", 1),
)

# Paths nobody links to; vulnerability scanners ask for them on every site.
PROBE_PATHS: tuple[str, ...] = (
    "/wp-login.php",
    "/xmlrpc.php",
    "/.env",
    "/.git/config",
    "/wp-admin/setup-config.php",
    "/phpmyadmin/index.php",
    "/admin.php",
    "/config.json",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/cgi-bin/luci",
    "/.aws/credentials",
    "/server-status",
)

# Words the blog, docs and search paths are made of.
# fmt: off
TOPIC_WORDS: tuple[str, ...] = (
    "logs", "metrics", "dashboards", "alerts", "pipelines", "kafka", "parquet", "duckdb",
    "retention", "sampling", "tracing", "billing", "teams", "sso", "exports", "webhooks",
    "queries", "partitions", "latency", "errors", "crawlers", "sessions", "funnels", "api",
)

ACTION_WORDS: tuple[str, ...] = (
    "getting-started-with", "why-we-chose", "how-to-tune", "a-guide-to", "debugging",
    "scaling", "migrating-to", "what-is-new-in", "benchmarking", "designing",
)
# fmt: on
