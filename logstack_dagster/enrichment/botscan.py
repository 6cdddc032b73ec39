"""The bot tests of a batch of new user agents at once, on Arrow's RE2 kernels.

Classifying agents one at a time spends most of its time in two places: trying each
agent against every entry of the bot table (about 90 µs an agent) and crawlerdetect's
alternation of some 1,500 patterns, which Python's regex engine tries one after another
at every position of the text (about 800 µs). Over a batch, each table entry is one
kernel call for all its agents, and the crawler list one RE2 automaton.

RE2 and Python's ``re`` find the same matches in ASCII text without line breaks for the
patterns RE2 accepts (both take the leftmost match, and of the alternatives there the
first; only before a final line break do their ``$`` differ); any other agent is left to
the one-at-a-time path, as is one that a pattern RE2 cannot take as it is (it takes a
looser form of it) could have matched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from crawlerdetect.providers.crawlers import data as crawler_patterns
from crawlerdetect.providers.exclusions import data as exclusion_patterns

log = logging.getLogger(__name__)

# RE2 compiles the crawler list anew on every call, about 10 ms: the price of classifying
# some 15 agents one at a time. Fewer new agents than this are left to that path, unless
# one is longer than LONG_AGENT: Python's engine takes time that grows faster than the
# length (0.3 s for 2,000 characters, minutes for 50,000), RE2's does not.
SCAN_FROM = 32
LONG_AGENT = 512

# A lookahead or lookbehind without groups inside, which RE2 does not have. Leaving one
# out of a pattern makes it match more, never less, so the pattern is still a safe test.
_LOOKAROUND = re.compile(r"\(\?<?[=!][^()]*\)")


class Scan(NamedTuple):
    """What the batch pass found out about one agent."""

    scanned: bool  # False: not ASCII or has a line break; classify it the slow way
    table_entry: int | None  # index of the first bot-table entry that matches, if any
    may_crawl: bool  # False: no crawlerdetect pattern can match it
    crawler_match: str | None = None  # the text crawlerdetect matches, when known here


_NOT_SCANNED = Scan(False, None, True)


class BatchBotScan:
    """Tests agents (already stripped) against the bot table's entries and crawlerdetect.

    ``entries`` are the table's patterns, in the table's order: each either plain needles
    found in the lower-cased text (``needles``) or a regex searched case-insensitively.
    """

    def __init__(self, entries: Sequence[tuple[tuple[str, ...] | None, str]]) -> None:
        self.entries = list(entries)
        self.exclusions = "(?i)(" + "|".join(exclusion_patterns) + ")"
        supersets = [_LOOKAROUND.sub("", p) for p in crawler_patterns]
        self.crawlers = "(" + "|".join(supersets) + ")"
        # The text of the first match, as the first group: a lazy prefix finds the leftmost.
        # The prefix and the rest take line breaks too; the patterns' own "." does not.
        self.first_crawler = r"(?i)^[\s\S]*?" + self.crawlers + r"[\s\S]*$"
        loosened = [loose for loose, p in zip(supersets, crawler_patterns) if loose != p]
        self.loosened = "(" + "|".join(loosened) + ")" if loosened else None
        try:
            probe = pa.array(["x"])
            pc.replace_substring_regex(probe, self.exclusions, "")
            pc.match_substring_regex(probe, self.crawlers, ignore_case=True)
            pc.replace_substring_regex(probe, self.first_crawler, r"\1")
            if self.loosened:
                pc.match_substring_regex(probe, self.loosened, ignore_case=True)
            for needles, pattern in self.entries:
                if needles is None:
                    pc.match_substring_regex(probe, pattern, ignore_case=True)
            self.usable = True
        except pa.ArrowInvalid as exc:
            # A crawlerdetect release with a pattern RE2 cannot take: every agent is then
            # classified one at a time, as before; right, only slower.
            log.warning("user agents are tested for bots one at a time: %s", exc)
            self.usable = False

    def scan(self, agents: list[str | None]) -> list[Scan]:
        """One Scan per agent, in order. None, non-ASCII agents and those with a line break
        are not scanned, nor are the agents of a list shorter than `SCAN_FROM` unless one
        of them is longer than `LONG_AGENT`."""
        if not self.usable or not agents or (
                len(agents) < SCAN_FROM and max(len(a or "") for a in agents) <= LONG_AGENT):
            return [_NOT_SCANNED] * len(agents)
        texts = pa.array(agents, pa.string())
        plain = pc.and_(pc.string_is_ascii(texts), pc.invert(pc.match_substring(texts, "\n")))
        scannable = pc.fill_null(plain, False).to_numpy(zero_copy_only=False)
        if not scannable.any():
            return [_NOT_SCANNED] * len(agents)
        lowered = pc.ascii_lower(texts)

        first = np.full(len(agents), -1)
        for index, (needles, pattern) in enumerate(self.entries):
            if needles is None:
                hit = pc.match_substring_regex(texts, pattern, ignore_case=True)
            else:
                hit = pc.match_substring(lowered, needles[0])
                for needle in needles[1:]:
                    hit = pc.or_(hit, pc.match_substring(lowered, needle))
            found = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
            first[(first < 0) & found] = index

        cleaned = pc.replace_substring_regex(texts, self.exclusions, "")
        crawl = pc.fill_null(pc.match_substring_regex(cleaned, self.crawlers, ignore_case=True),
                             False).to_numpy(zero_copy_only=False)
        matches = self._crawler_matches(cleaned, np.flatnonzero(crawl & scannable))
        return [Scan(True, int(f) if f >= 0 else None, bool(c), matches.get(i)) if a
                else _NOT_SCANNED
                for i, (a, f, c) in enumerate(zip(scannable, first, crawl, strict=True))]

    def _crawler_matches(self, cleaned: pa.Array, hits: np.ndarray) -> dict[int, str]:
        """The text crawlerdetect would match in each of the agents at `hits`, where RE2's
        answer is sure to be Python's: not where a loosened pattern matches."""
        if not len(hits):
            return {}
        texts = cleaned.take(pa.array(hits))
        found = pc.replace_substring_regex(texts, self.first_crawler, r"\1").to_pylist()
        unsure = [False] * len(hits)
        if self.loosened:
            unsure = pc.match_substring_regex(texts, self.loosened,
                                              ignore_case=True).to_pylist()
        # An empty match is no crawler to crawlerdetect; let it say so itself.
        return {int(i): text for i, text, loose in zip(hits, found, unsure, strict=True)
                if text and not loose}
