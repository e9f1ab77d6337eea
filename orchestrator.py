#!/usr/bin/env python3
"""kitefleet's orchestrator: the fleet side. Knows every user by name and env-file path; never
trades, never calls Kite, never loads an env file into its own environment. See ``--help``."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fleet.cli import main

    sys.exit(main())
