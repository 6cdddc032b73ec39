"""Format detection from a sample spread over the whole batch.

The sample is taken evenly from the batch, not from its head, because files often start
with a run of odd lines (health checks, `"-"` requests of idle connections). Candidates are
scored by how many sample lines their strict pattern takes, then their lenient ones.
"""

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from logstack_dagster.parser.formats import W3C, LogFormat
from logstack_dagster.parser.lenient import LenientParser, Reject
from logstack_dagster.parser.lines import to_text
from logstack_dagster.parser.patterns import strict_pattern
from logstack_dagster.parser.presets import PRESETS

SAMPLE_SIZE = 200
# Earlier wins ties and near ties: combined before common. Common's pattern takes a
# combined line too (the rest is extras), so one line cut short in a combined log's sample
# would otherwise make common win, and every row of the partition lose its referrer and
# user agent; a line or two in fifty (NEAR_TIE) goes to the richer format.
NEAR_TIE = 50
CANDIDATES = (
    "combined", "common", "vhost_combined", "vhost_common", "nginx_vhost",
    "combined_iso", "common_iso",
)


def detect_format(lines: Sequence[bytes]) -> LogFormat:
    """The LogFormat that fits most of a sample of the records; `combined` if none fits."""
    return detect_in_text(to_text(lines))


def detect_in_text(text: pa.Array) -> LogFormat:
    """detect_format for records already decoded into a string array."""
    sample = _sample(text)
    # W3C files name their fields in a header near the top, which the sample may skip.
    head = text.slice(0, 1000).to_pylist() + sample
    header = next((s for s in head if s and s.startswith("#Fields:")), None)
    if header is not None:
        return LogFormat(name="w3c", kind=W3C, w3c_fields=tuple(header[8:].split()), spec=header)
    if sample and sum(s.lstrip().startswith("{") for s in sample) * 2 > len(sample):
        return PRESETS["json"]

    array = pa.array(sample, pa.string())
    scores = [(_strict_score(array, PRESETS[name]), name) for name in CANDIDATES]
    best = max(score for score, _ in scores)
    if best == 0:
        scores = [(_lenient_score(sample, PRESETS[name]), name) for name in CANDIDATES]
        best = max(score for score, _ in scores)
    winner = next(name for score, name in scores if score >= best - best // NEAR_TIE)
    return PRESETS[winner]


def _sample(text: pa.Array) -> list[str]:
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    kept = pc.filter(text, pc.invert(pc.fill_null(blank, True)))
    step = max(1, len(kept) // SAMPLE_SIZE)
    return kept.to_pylist()[::step][:SAMPLE_SIZE] if step > 1 else kept.to_pylist()


def _strict_score(sample: pa.Array, fmt: LogFormat) -> int:
    return pc.sum(pc.match_substring_regex(sample, strict_pattern(fmt))).as_py() or 0


def _lenient_score(sample: list[str], fmt: LogFormat) -> int:
    parser = LenientParser(fmt)
    score = 0
    for n, line in enumerate(sample):
        try:
            parser.parse(n, line)
            score += 1
        except Reject:
            pass
    return score
