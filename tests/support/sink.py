"""The local notification sink lives in demo/sink.py (``make demo`` uses it too); tests import it here."""

from demo.sink import ID, Sink

__all__ = ["ID", "Sink"]
