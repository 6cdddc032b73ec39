"""argparse types shared by the command line and the dataflow's runner: a bad value
becomes one usage line naming the flag."""

import argparse
import math


# Ten years: longer waits are mistakes, and Python's clocks and timers overflow at some
# point beyond (`timedelta`, `threading.Event.wait`).
MAX_SECONDS = 315_360_000


def seconds(text: str) -> float:
    """A count of seconds from 0 to MAX_SECONDS."""
    return _seconds(text, 0 <= _number(text) <= MAX_SECONDS, ">= 0")


def positive_seconds(text: str) -> float:
    """A count of seconds above 0, up to MAX_SECONDS."""
    return _seconds(text, 0 < _number(text) <= MAX_SECONDS, "> 0")


def _number(text: str) -> float:
    try:
        return float(text) + 0.0  # -0 is 0
    except ValueError:
        return math.nan


def _seconds(text: str, good: bool, bound: str) -> float:
    if not good:
        raise argparse.ArgumentTypeError(
            f"expected seconds {bound} and at most {MAX_SECONDS:,} (ten years), not {text!r}")
    return float(text) + 0.0  # -0 is 0
