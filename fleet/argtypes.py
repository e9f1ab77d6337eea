"""argparse types for the orchestrator's numeric options: a bad value is a usage error (exit 2)
naming the option's range, never a traceback later (``--timeout 1e308`` overflowed a wait) or a
value that silently means something else (``--stop-grace -1`` or ``nan``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """A finite number of seconds in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``)."""
    shown = f"{'more than' if lo_open else 'at least'} {lo:g} and at most {hi:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < lo or (lo_open and value == lo) or value > hi:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds {shown}")
        return value

    return parse
