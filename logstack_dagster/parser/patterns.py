"""Regular expressions generated from a text format's tokens.

The strict pattern (RE2, no captures) only admits lines whose fields sit where a split on
quotes and spaces finds them, so the fast path can cut them without capturing. The lenient
patterns (Python `re`, with groups) take what real servers write: escaped quotes, spaces in
the user name, tabs, missing offsets, and as a last resort raw quotes inside the request or
the final field.
"""

import re

from logstack_dagster.parser.formats import LogFormat, Token

STRICT_TOKEN = r'[^\s"]+'
# No `\"` inside: lines with escaped quotes go to the lenient path, which unescapes them.
STRICT_QUOTED = r'(?:[^"\\]|\\[^"])*'
STRICT_FIELD = {
    "time": r"\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}",
    "time_iso": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})",
    "status": r"(?:\d{3}|-)",
    "bytes": r"(?:\d+|-)",
    "port": r"\d+",
    "hostport": r'[^\s":]+(?::\d+)?',
}
STRICT_TRAILING = r'(?: (?:"' + STRICT_QUOTED + r'"|[^\s"]+))*'

# The opening of a logged time (CLF or ISO in brackets, or ISO with its zone): found again
# inside a field of a parsed line, it is the next line's, run into this one when a newline
# was lost.
SECOND_TIME = (r"\[(?:\d{1,2}/[A-Za-z]{3}/\d{4}:|\d{4}-\d{2}-\d{2}T)\d{2}:\d{2}"
               r"|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})")

LENIENT_QUOTED = r'(?:[^"\\]|\\.)*'
LENIENT_FIELD = {
    "time": r"[^\]]*",
    "user": r".*?",
    "hostport": r"\S+?",
}
LENIENT_TRAILING = r'((?:[ \t]+(?:"(?:[^"\\]|\\.)*"|[^\s"]+))*)'


def is_quoted(tokens: tuple[Token, ...], i: int) -> bool:
    """True when token i is a field written between double quotes."""
    before = tokens[i - 1].text if i > 0 and tokens[i - 1].name is None else ""
    after = tokens[i + 1].text if i + 1 < len(tokens) and tokens[i + 1].name is None else ""
    return before.endswith('"') and after.startswith('"')


def strict_pattern(fmt: LogFormat) -> str:
    """RE2 pattern, anchored, without captures, accepting only cleanly structured lines."""
    pieces = ["^"]
    for i, token in enumerate(fmt.tokens):
        if token.name is None:
            pieces.append(re.escape(token.text))
        elif is_quoted(fmt.tokens, i):
            pieces.append(STRICT_QUOTED)
        else:
            pieces.append(STRICT_FIELD.get(token.name, STRICT_TOKEN))
    if fmt.trailing:
        pieces.append(STRICT_TRAILING)
    pieces.append("$")
    return "".join(pieces)


def lenient_patterns(fmt: LogFormat) -> list[tuple[re.Pattern, bool]]:
    """(pattern, cut_off) pairs tried in order; group i+1 is the i-th field, the last the tail.

    The second pattern takes the request greedily up to the quote that is followed by a valid
    status (raw quotes in a URL); the third lets the final quoted field run to the last quote
    of the line (raw quotes in a user agent); the fourth, flagged cut_off, accepts a line that
    ends inside its final quoted field, as loggers that cap line length leave it.
    """
    quoted = [is_quoted(fmt.tokens, i) for i in range(len(fmt.tokens))]
    last_quoted = max((i for i, q in enumerate(quoted) if q), default=None)
    variants = [(False, False, False), (True, False, False)]
    if last_quoted == len(fmt.tokens) - 2:
        variants += [(False, True, False), (False, False, True)]
    return [(_lenient(fmt, quoted, request, last, cut, last_quoted), cut)
            for request, last, cut in variants]


def _lenient(fmt, quoted, greedy_request, greedy_last, cut_off, last_quoted) -> re.Pattern:
    pieces = [r"^[ \t]*"]
    for i, token in enumerate(fmt.tokens):
        if cut_off and i > last_quoted:
            pieces.append(r'[ \t]*()$')  # closing quote and any trailing fields were cut
            return re.compile("".join(pieces), re.DOTALL)
        if token.name is None:
            pieces.append(lenient_literal(token.text))
        elif quoted[i] and greedy_request and token.name == "request":
            pieces.append("(.*)")
        elif quoted[i] and (greedy_last or cut_off) and i == last_quoted:
            pieces.append("(.*)")
        elif quoted[i]:
            pieces.append("(" + LENIENT_QUOTED + ")")
        else:
            pieces.append("(" + LENIENT_FIELD.get(token.name, r"\S+") + ")")
    pieces.append("()" if greedy_last or not fmt.trailing else LENIENT_TRAILING)
    pieces.append(r"[ \t]*$")
    return re.compile("".join(pieces), re.DOTALL)


def lenient_literal(text: str) -> str:
    # Any run of blanks in the format matches any run of spaces or tabs in the line.
    parts = re.split(r"([ \t]+)", text)
    return "".join(r"[ \t]+" if p.strip(" \t") == "" and p else re.escape(p) for p in parts)
