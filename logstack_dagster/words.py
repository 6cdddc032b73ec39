"""Counts in the messages people read."""


def plural(count: int, word: str) -> str:
    """`count` and `word`, with an `s` unless there is exactly one (`1 file`, `2 files`)."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"
