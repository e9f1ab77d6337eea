"""Plain tables for people, JSON for machines, errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def print_json(obj: Any, out: TextIO | None = None) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str), file=out or sys.stdout)


def error(message: str) -> None:
    print(f"orchestrator: error: {message}", file=sys.stderr)


def warning(message: str) -> None:
    print(f"orchestrator: warning: {message}", file=sys.stderr)
