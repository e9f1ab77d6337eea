"""Kite error envelope: every failure the paper broker reports is one of these."""

from __future__ import annotations


class KiteError(Exception):
    """Rendered as ``{"status":"error","message":...,"data":null,"error_type":...}`` with ``status``."""

    def __init__(self, error_type: str, message: str, status: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status

    def envelope(self) -> dict[str, object]:
        return {"status": "error", "message": self.message, "data": None, "error_type": self.error_type}


def input_error(message: str) -> KiteError:
    return KiteError("InputException", message, 400)


def token_error(message: str = "Incorrect `api_key` or `access_token`.") -> KiteError:
    return KiteError("TokenException", message, 403)


def order_error(message: str, status: int = 400) -> KiteError:
    return KiteError("OrderException", message, status)


def margin_error(message: str) -> KiteError:
    # kiteconnect 5.2.2 has no MarginException class: the client raises GeneralException(code=400).
    return KiteError("MarginException", message, 400)


def holding_error(message: str) -> KiteError:
    return KiteError("HoldingException", message, 400)


def not_found(message: str = "Route not found") -> KiteError:
    return KiteError("GeneralException", message, 404)


def rate_limited() -> KiteError:
    return KiteError("NetworkException", "Too many requests", 429)
