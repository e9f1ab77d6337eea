"""Keep worker processes small: kiteconnect without its websocket ticker.

``kiteconnect/__init__.py`` imports ``KiteTicker`` eagerly, which pulls in twisted and autobahn:
about 25 MB of resident memory and 0.2 s of start-up in every job process (measured: a bare
``import kiteconnect`` peaks at 53 MB, 28 MB with this placeholder). kitefleet uses only the REST
client, so before anything imports kiteconnect the worker entry puts a placeholder module in
``sys.modules["kiteconnect.ticker"]``. Using ``KiteTicker`` in a worker then fails loudly instead
of silently costing memory in every user's processes.
"""

from __future__ import annotations

import sys
import types

TICKER_MODULE = "kiteconnect.ticker"


class _NoTicker:
    def __init__(self, *_args: object, **_kwargs: object) -> None:
        raise RuntimeError("KiteTicker is not loaded in kitefleet workers (REST only; see workers/lean_imports.py)")


def install_ticker_placeholder() -> None:
    """Idempotent; a no-op when kiteconnect (with its real ticker) is already imported."""
    if "kiteconnect" in sys.modules or TICKER_MODULE in sys.modules:
        return
    placeholder = types.ModuleType(TICKER_MODULE)
    placeholder.KiteTicker = _NoTicker  # type: ignore[attr-defined]
    placeholder.__doc__ = "placeholder: see workers/lean_imports.py"
    sys.modules[TICKER_MODULE] = placeholder
