import re
from pathlib import Path

import pyarrow as pa
import pytest

from logstack_dagster.enrichment.useragent import (
    BOT_CATEGORIES,
    BOTS,
    DEVICE_CLASSES,
    UA_CLASSES,
    USER_AGENT_SCHEMA,
    UserAgentEnricher,
)

# Agents as these clients send them (versions vary; the shape is what matters).
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
CHATGPT_USER = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
    "+https://openai.com/bot"
)
CLAUDEBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
    "+claudebot@anthropic.com)"
)
BYTESPIDER = (
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
    "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)"
)
AHREFS = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"
UPTIMEROBOT = "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.53 Mobile Safari/537.36"
)
CHROME_ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.6422.53 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"
CURL = "curl/8.7.1"
PYTHON_REQUESTS = "python-requests/2.32.3"
UNLISTED_CRAWLER = "Mozilla/5.0 (compatible; Quuxbot/0.9; +https://quux.example/bot)"


@pytest.fixture(scope="module")
def agents() -> UserAgentEnricher:
    return UserAgentEnricher()


def enrich(agents: UserAgentEnricher, values: list[str | None]) -> list[dict]:
    table = pa.table({"user_agent": pa.array(values, pa.string())})
    return agents.enrich(table).drop_columns(["user_agent"]).to_pylist()


@pytest.mark.parametrize(
    ("agent", "name", "category"),
    [
        (GOOGLEBOT, "Googlebot", "search_engine"),
        (GOOGLEBOT_SMARTPHONE, "Googlebot", "search_engine"),
        (GPTBOT, "GPTBot", "ai_crawler"),
        (CHATGPT_USER, "ChatGPT-User", "ai_crawler"),
        (CLAUDEBOT, "ClaudeBot", "ai_crawler"),
        (BYTESPIDER, "Bytespider", "ai_crawler"),
        (AHREFS, "AhrefsBot", "seo_tool"),
        (UPTIMEROBOT, "UptimeRobot", "monitor"),
        (CURL, "curl", "library"),
        (PYTHON_REQUESTS, "python-requests", "library"),
        # Without a version, as scripts set them by hand: once filed as two bots.
        ("curl", "curl", "library"),
        ("Wget", "Wget", "library"),
        ("python-requests", "python-requests", "library"),
        (UNLISTED_CRAWLER, "Quuxbot", "unknown_bot"),
    ],
)
def test_bots_get_their_name_and_category(agents, agent, name, category) -> None:
    info = agents.classify(agent)

    assert (info.ua_class, info.is_bot, info.bot_name, info.bot_category) == (
        "bot", True, name, category)
    assert info.device_class == "bot"
    # A bot's browser is a disguise: it is not reported as one.
    assert info.browser_family is None and info.browser_version is None


@pytest.mark.parametrize(
    ("agent", "browser", "version", "os", "device"),
    [
        (CHROME_WINDOWS, "Chrome", "125.0", "Windows", "desktop"),
        (FIREFOX_LINUX, "Firefox", "126.0", "Linux", "desktop"),
        (SAFARI_IPHONE, "Mobile Safari", "17.5", "iOS", "mobile"),
        (SAFARI_IPAD, "Mobile Safari", "16.6", "iOS", "tablet"),
        (CHROME_ANDROID_PHONE, "Chrome Mobile", "125.0", "Android", "mobile"),
        (CHROME_ANDROID_TABLET, "Chrome", "125.0", "Android", "tablet"),
    ],
)
def test_browsers_are_humans_with_browser_os_and_device(
    agents, agent, browser, version, os, device
) -> None:
    info = agents.classify(agent)

    assert (info.ua_class, info.is_bot, info.bot_name, info.bot_category) == (
        "human", False, None, None)
    assert (info.browser_family, info.browser_version, info.os_family, info.device_class) == (
        browser, version, os, device)


@pytest.mark.parametrize("agent", [None, "", "-", "  "])
def test_missing_agents_are_empty_not_bots(agents, agent) -> None:
    info = agents.classify(agent)

    assert (info.ua_class, info.is_bot, info.device_class) == ("empty", False, "other")
    assert info.bot_name is None and info.browser_family is None


@pytest.mark.parametrize("agent", ["Mozilla/5.0", "x", "hello there"])
def test_agents_nobody_recognises_are_unknown(agents, agent) -> None:
    info = agents.classify(agent)

    assert (info.ua_class, info.is_bot, info.device_class) == ("unknown", False, "other")


def test_enrich_appends_typed_columns_row_by_row(agents) -> None:
    values = [CHROME_WINDOWS, None, GPTBOT, CHROME_WINDOWS, "-", "Mozilla/5.0"]
    table = pa.table({"user_agent": pa.array(values, pa.string()), "row": range(6)})

    out = agents.enrich(table)

    assert out.schema.names == ["user_agent", "row", *USER_AGENT_SCHEMA.names]
    assert out.schema.field("is_bot").type == pa.bool_()
    assert out.column("row").to_pylist() == list(range(6))
    assert out.column("ua_class").to_pylist() == [
        "human", "empty", "bot", "human", "empty", "unknown"]
    assert out.column("bot_name").to_pylist() == [None, None, "GPTBot", None, None, None]
    for never_null in ("ua_class", "is_bot", "device_class"):
        assert out.column(never_null).null_count == 0


def test_each_distinct_agent_is_classified_once_across_batches() -> None:
    agents = UserAgentEnricher()
    asked: list[str] = []
    classify = agents._classify

    def counting(agent: str, *hint):
        asked.append(agent)
        return classify(agent, *hint)

    agents._classify = counting
    enrich(agents, [CURL, SAFARI_IPHONE, CURL, CURL])
    enrich(agents, [SAFARI_IPHONE, CLAUDEBOT, CURL])

    assert sorted(asked) == sorted([CURL, SAFARI_IPHONE, CLAUDEBOT])
    assert agents.cache_len == 3


def test_a_full_cache_starts_again_from_the_batch_at_hand() -> None:
    agents = UserAgentEnricher(cache_size=3)

    enrich(agents, [CURL, GPTBOT, None])
    out = enrich(agents, [CURL, CLAUDEBOT, CLAUDEBOT])

    assert agents.cache_len == 2
    assert [row["bot_name"] for row in out] == ["curl", "ClaudeBot", "ClaudeBot"]


def test_enriching_twice_or_without_the_column_is_an_error(agents) -> None:
    once = agents.enrich(pa.table({"user_agent": pa.array([CURL])}))

    with pytest.raises(ValueError, match="only once"):
        agents.enrich(once)
    with pytest.raises(ValueError, match="no 'user_agent' column"):
        agents.enrich(pa.table({"agent": [CURL]}))
    with pytest.raises(ValueError, match="string column"):
        agents.enrich(pa.table({"user_agent": [1, 2]}))


def test_the_bot_table_uses_only_known_categories_and_compiles() -> None:
    assert {bot.category for bot in BOTS} <= set(BOT_CATEGORIES)
    names = [bot.name for bot in BOTS]
    for ai_crawler in ("GPTBot", "ChatGPT-User", "OAI-SearchBot", "ClaudeBot", "Claude-Web",
                       "anthropic-ai", "PerplexityBot", "Bytespider", "CCBot", "Google-Extended",
                       "Amazonbot", "Applebot-Extended", "meta-externalagent"):
        assert ai_crawler in names
    assert set(UA_CLASSES) == {"human", "bot", "empty", "unknown"}
    assert set(DEVICE_CLASSES) == {"desktop", "mobile", "tablet", "bot", "other"}


def test_applebot_extended_is_not_taken_for_applebot(agents) -> None:
    plain = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15 (Applebot/0.1)"
    )

    assert agents.classify(plain).bot_name == "Applebot"
    assert agents.classify(plain).bot_category == "search_engine"
    assert agents.classify("Applebot-Extended/0.1").bot_category == "ai_crawler"


def _agents_of(path: Path) -> list[str]:
    from logstack_dagster.parser import parse_lines

    rows = parse_lines(path.read_bytes().splitlines()).rows
    if "user_agent" not in rows.column_names:
        return []
    return [a for a in rows.column("user_agent").unique().to_pylist() if a is not None]


def test_a_batch_of_agents_is_classified_as_one_at_a_time(shared_data: Path) -> None:
    """New agents are tested for bots a batch at a time (RE2 over the batch); every answer
    must be the one the one-at-a-time path gives, bot names included."""
    from crawlerdetect.providers.crawlers import data as crawler_patterns

    from logstack_dagster.sample.generate import generate_lines

    agents = {a for log in sorted(shared_data.glob("*.log")) for a in _agents_of(log)}
    generated = b"\n".join(generate_lines(20_000, seed=3)).splitlines()
    agents |= {line.split(b'"')[5].decode() for line in generated if line.count(b'"') >= 6}
    # A name of each of crawlerdetect's plain patterns, inside a browser-like agent.
    agents |= {f"Mozilla/5.0 (compatible; {p}/1.0; +http://example.com/)"
               for p in crawler_patterns if re.fullmatch(r"[\w .-]+", p)}
    agents |= {
        "YandexSearch/1.0", "YandexBot/3.0", "Yandex", "  curl/8.1  ", "\tWget/1.21",
        "Mozilla/5.0 (compatible; Bot\u212a/1.0)",  # Kelvin sign: lowers to an ASCII k
        "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 \u00e9t\u00e9",
        "Googlebot-Image/1.0 \u2603", "-", "", "\"-\"", "Mozilla/5.0",
        # A line break inside: "." of a crawler pattern does not match it, and "$" of
        # Python's engine matches before a last one (left by removing "Linux" here).
        "Java\noutbrain spider/1.0", "NewsBlur \nFinder Crawler", "Java/1.8 outbrain",
        "DebugBear\nLinux", "b0t\nLinux", "Amazon Simple Notification Service Agent\nUbuntu",
        "Mozilla/5.0 (X11; Linux) DebugBear\nSafari/537.36",
        # Long: tested on RE2 however few new agents come with them.
        "Mozilla/5.0 " + "a" * 3_000 + " Googlebot/2.1", "Mozilla/5.0 " + "b" * 50_000,
    }
    agents = sorted(agents)
    assert len(agents) > 1_500

    batch = UserAgentEnricher().enrich(pa.table({"user_agent": pa.array(agents, pa.string())}))
    one_by_one = UserAgentEnricher()
    differing = [(agent, row, one_by_one.classify(agent)._asdict())
                 for agent, row in zip(agents, batch.select(USER_AGENT_SCHEMA.names).to_pylist(),
                                       strict=True)
                 if row != one_by_one.classify(agent)._asdict()]
    assert differing == []
    bots = sum(batch.column("is_bot").to_pylist())
    assert bots > 1_000 and bots < len(agents)


def test_few_new_agents_are_classified_as_many_are() -> None:
    """Below SCAN_FROM new agents a batch takes the one-at-a-time path, except the long
    ones; either way the answers are the same, and a 50,000-character agent is quick."""
    agents = ["DebugBear\nLinux", "Mozilla/5.0 (compatible; Googlebot/2.1)", "curl/8.4.0",
              "Mozilla/5.0 " + "a" * 50_000, "Mozilla/5.0 " + "x" * 3_000 + " AhrefsBot/7.0",
              "Mozilla/5.0 \u00e9" + "a" * 50_000 + " SemrushBot"]
    few = UserAgentEnricher().enrich(pa.table({"user_agent": pa.array(agents)}))
    rows = few.select(USER_AGENT_SCHEMA.names).to_pylist()
    assert rows == [UserAgentEnricher().classify(a)._asdict() for a in agents]
    assert [r["bot_name"] for r in rows[:5]] == ["DebugBear", "Googlebot", "curl", None,
                                                 "AhrefsBot"]
