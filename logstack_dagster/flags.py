"""argparse types shared by the command line and the dataflow's runner: a bad value
becomes one usage line naming the flag."""

import argparse
import math


# Ten years: longer waits are mistakes, and Python's clocks and timers overflow at some
# point beyond (`timedelta`, `threading.Event.wait`).
MAX_SECONDS = 315_360_000


def seconds(text: str) -> float:
    """A count of seconds from 0 to MAX_SECONDS."""
    return _seconds(text, positive=False)


def positive_seconds(text: str) -> float:
    """A count of seconds above 0, up to MAX_SECONDS."""
    return _seconds(text, positive=True)


def _seconds(text: str, positive: bool) -> float:
    try:
        value = float(text) + 0.0  # -0 is 0
    except ValueError:
        value = math.nan
    if not ((0 < value) if positive else (0 <= value)) or not value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds {'> 0' if positive else '>= 0'} and at most "
            f"{MAX_SECONDS:,} (ten years), not {text!r}")
    return value
