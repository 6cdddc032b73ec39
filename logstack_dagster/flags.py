"""argparse types shared by the command line and the dataflow's runner: a bad value
becomes one usage line naming the flag."""

import argparse
import math


def seconds(text: str) -> float:
    """A finite count of seconds, at least 0."""
    return _seconds(text, 0 <= _number(text) < math.inf, ">= 0")


def positive_seconds(text: str) -> float:
    """A finite count of seconds above 0."""
    return _seconds(text, 0 < _number(text) < math.inf, "> 0")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _seconds(text: str, good: bool, bound: str) -> float:
    if not good:
        raise argparse.ArgumentTypeError(f"expected seconds {bound}, not {text!r}")
    return float(text)
