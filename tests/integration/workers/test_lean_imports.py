"""A job process loads the Kite REST client without the websocket ticker (twisted, autobahn)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.homes import PROJECT_ROOT


def test_worker_entry_imports_kiteconnect_without_the_ticker() -> None:
    code = (
        "import sys\n"
        "from workers.lean_imports import install_ticker_placeholder\n"
        "install_ticker_placeholder()\n"
        "from workers.kite_client import KiteApi\n"
        "import kiteconnect\n"
        "assert kiteconnect.KiteConnect is not None\n"
        "print(sorted(m for m in ('twisted', 'autobahn') if m in sys.modules))\n"
        "try:\n"
        "    kiteconnect.KiteTicker('k', 't')\n"
        "except RuntimeError as exc:\n"
        "    print('ticker refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "ticker refused"
