"""The read-only client on the real kiteconnect class: every write raises before any HTTP call."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from kiteconnect import KiteConnect

from workers.kite_client import KiteApi
from workers.kite_readonly import READ_METHODS, ReadOnlyKiteApi, ReadOnlyKiteConnect, WriteRefused
from workers.ratelimit import RateLimiter


class _Sent(Exception):
    pass


class _RecordingSession:
    """Stands in for requests.Session at the socket's edge: records and refuses every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.requests.append((method, url))
        raise _Sent(f"{method} {url}")


def _client(tmp_path: Path, cls: type = ReadOnlyKiteConnect) -> tuple[Any, _RecordingSession]:
    limiter = RateLimiter(tmp_path / "ratelimit")
    kite = cls("key", "http://127.0.0.1:9", limiter, 1.0) if cls is ReadOnlyKiteConnect else cls(
        "key", root="http://127.0.0.1:9")
    session = _RecordingSession()
    kite.reqsession = session
    kite.set_access_token("token")
    return kite, session


def _public(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


WRITES = sorted(_public(KiteConnect) - READ_METHODS)


def test_the_known_writes_are_not_on_the_allow_list() -> None:
    for name in ("place_order", "modify_order", "cancel_order", "exit_order", "place_gtt", "modify_gtt",
                 "delete_gtt", "convert_position", "place_mf_order", "cancel_mf_order", "place_mf_sip",
                 "modify_mf_sip", "cancel_mf_sip", "place_autoslice_order", "invalidate_access_token"):
        assert name in WRITES


@pytest.mark.parametrize("name", WRITES)
def test_every_write_method_raises_before_any_request(tmp_path: Path, name: str) -> None:
    kite, session = _client(tmp_path)
    method = getattr(kite, name)
    with pytest.raises(WriteRefused, match=name):
        method(*([None] * 8)) if _takes_args(getattr(KiteConnect, name)) else method()
    assert session.requests == []


def _takes_args(fn: Any) -> bool:
    return any(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
               for p in list(inspect.signature(fn).parameters.values())[1:])


def test_the_plain_client_would_have_sent_the_order(tmp_path: Path) -> None:
    # The control: the same call on the unmodified class reaches the HTTP session.
    kite, session = _client(tmp_path, KiteConnect)
    with pytest.raises(_Sent):
        kite.place_order("regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                         quantity=1, product="CNC", order_type="LIMIT", price=100.0)
    assert session.requests and session.requests[0][0] == "POST"


def test_a_write_through_the_private_request_path_is_refused(tmp_path: Path) -> None:
    kite, session = _client(tmp_path)
    for call, route in ((kite._post, "order.place"), (kite._put, "gtt.modify"), (kite._delete, "gtt.delete")):
        with pytest.raises(WriteRefused):
            call(route, url_args={"variety": "regular", "order_id": "1", "trigger_id": 1}, params={})
    assert session.requests == []


def test_reads_reach_the_http_session(tmp_path: Path) -> None:
    kite, session = _client(tmp_path)
    with pytest.raises(_Sent):
        kite.margins()
    with pytest.raises(_Sent):
        kite.historical_data(408065, "2026-01-01", "2026-01-02", "day")
    assert [m for m, _ in session.requests] == ["GET", "GET"]


def test_the_api_wrapper_refuses_its_writes_too() -> None:
    for name in sorted(_public(KiteApi) - READ_METHODS - {"connect"}):
        with pytest.raises(WriteRefused):
            getattr(ReadOnlyKiteApi, name)(object(), *([None] * 6))
    assert "place_order" not in READ_METHODS
