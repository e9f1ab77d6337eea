"""The paper broker's Kite endpoints through the real kiteconnect client, against one broker
subprocess whose clock is frozen (a clock file with a negligible speed) at a trading-day instant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from kitefleet.clock import IST
from kitefleet.settings import api_key_fingerprint
from tests.support.broker import RunningBroker, clock_file, start_broker
from tests.support.homes import make_home, write_env

NOW = datetime(2026, 11, 25, 11, 30, 0, tzinfo=IST)  # a Wednesday
FROZEN = 1e-6  # simulated seconds per wall second: the clock stands still for the test's length
SYMBOLS = ["INFY", "TCS", "NIFTY 50"]
INFY = 408065
INTERVALS = ["minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    root = tmp_path_factory.mktemp("api")
    home = make_home(root / "home")
    write_env(home, "Som")
    write_env(home, "Sai", PAPER_STARTING_CASH=250000)
    write_env(home, "Liz", mode="live")  # never a paper account
    b = start_broker(home, clock=clock_file(root / "clock", NOW, speed=FROZEN), symbols=SYMBOLS)
    yield b
    assert b.stop() == 0


@pytest.fixture(scope="module")
def som(broker: RunningBroker) -> KiteConnect:
    return broker.kite("Som")


@pytest.fixture(scope="module")
def sai(broker: RunningBroker) -> KiteConnect:
    return broker.kite("Sai")


def _envelope_error(r: requests.Response, status: int, error_type: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert "application/json" in r.headers["Content-Type"]
    body = r.json()
    assert body["status"] == "error" and body["error_type"] == error_type and body["data"] is None
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- session, profile, funds, portfolio -------------------------------------------------------

def test_login_returns_full_session_and_profile(broker: RunningBroker, som: KiteConnect) -> None:
    profile = som.profile()
    assert profile["user_name"] == "Som" and profile["broker"] == "ZERODHA"
    assert profile["user_id"].startswith("PA") and len(profile["user_id"]) == 6
    # A fresh login shows every field the client and the workers read.
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": "keysom0001", "v": 3},
                     allow_redirects=False, timeout=5)
    assert r.status_code == 302 and "request_token=" in r.headers["Location"]
    kite = KiteConnect("keysom0001", root=broker.url)
    token = r.headers["Location"].split("request_token=")[1].split("&")[0]
    session = kite.generate_session(token, api_secret="secret-som-S3CR3T")
    for key in ("user_type", "email", "user_name", "user_shortname", "broker", "exchanges", "products",
                "order_types", "avatar_url", "user_id", "api_key", "access_token", "public_token", "enctoken",
                "refresh_token", "silo", "login_time", "meta"):
        assert key in session, key
    assert session["login_time"] == NOW.replace(tzinfo=None)  # converted by the client: 19 characters
    assert session["user_id"] == profile["user_id"]
    assert session["access_token"] != som.access_token


def test_margins_holdings_positions(som: KiteConnect, sai: KiteConnect) -> None:
    margins = som.margins()
    assert set(margins) >= {"equity", "commodity"}
    equity = som.margins("equity")
    assert equity["available"]["opening_balance"] == pytest.approx(1_000_000.0)
    assert equity["net"] == pytest.approx(equity["available"]["live_balance"])
    for key in ("debits", "exposure", "m2m_realised", "m2m_unrealised", "delivery"):
        assert key in equity["utilised"]
    assert sai.margins("equity")["available"]["cash"] == pytest.approx(250_000.0)
    assert som.holdings() == []
    assert som.positions() == {"net": [], "day": []}
    with pytest.raises(kex.InputException) as info:
        som.margins("crypto")
    assert info.value.code == 400


# --- instruments and quotes ---------------------------------------------------------------------

def test_instruments_csv(som: KiteConnect) -> None:
    rows = som.instruments()
    assert {r["tradingsymbol"] for r in rows} == set(SYMBOLS)
    infy = next(r for r in rows if r["tradingsymbol"] == "INFY")
    assert infy["instrument_token"] == INFY and infy["exchange"] == "NSE" and infy["lot_size"] == 1
    assert infy["tick_size"] > 0 and infy["expiry"] == ""
    index = next(r for r in rows if r["tradingsymbol"] == "NIFTY 50")
    assert (index["segment"], index["tick_size"], index["lot_size"]) == ("INDICES", 0.0, 0)
    assert som.ltp("NSE:NIFTY 50")["NSE:NIFTY 50"]["last_price"] > 0  # the market still moves it
    assert som.instruments("NSE") == rows
    assert som.instruments("BSE") == []
    with pytest.raises(kex.InputException):
        som.instruments("XYZ")


def test_ltp_ohlc_quote_keyed_as_requested(som: KiteConnect) -> None:
    keys = ["NSE:INFY", str(INFY), "NSE:NOPE", "BSE:INFY", "INFY", "NSE:NIFTY 50"]
    ltp = som.ltp(*keys)
    assert set(ltp) == {"NSE:INFY", str(INFY), "NSE:NIFTY 50"}
    assert ltp["NSE:INFY"] == ltp[str(INFY)]
    assert ltp["NSE:INFY"]["instrument_token"] == INFY and ltp["NSE:INFY"]["last_price"] > 0

    ohlc = som.ohlc("NSE:INFY", "NSE:TCS")
    assert set(ohlc) == {"NSE:INFY", "NSE:TCS"}
    bar = ohlc["NSE:INFY"]["ohlc"]
    last = ohlc["NSE:INFY"]["last_price"]
    assert last == ltp["NSE:INFY"]["last_price"]
    assert bar["low"] <= min(bar["open"], last) <= max(bar["open"], last) <= bar["high"]

    quote = som.quote("NSE:INFY", "NSE:NOPE")
    assert set(quote) == {"NSE:INFY"}
    q = quote["NSE:INFY"]
    assert q["timestamp"] == NOW.replace(tzinfo=None)  # a naive datetime after the client's conversion
    assert q["last_price"] == last and q["ohlc"] == bar
    assert q["lower_circuit_limit"] < last < q["upper_circuit_limit"]
    assert q["net_change"] == 0  # as Kite's REST quote sends it; the change is last - ohlc.close
    assert len(q["depth"]["buy"]) == 5 and len(q["depth"]["sell"]) == 5
    assert q["depth"]["buy"][0]["price"] <= last <= q["depth"]["sell"][0]["price"]
    assert q["volume"] > 0

    assert som.ltp() == {}


def test_quote_key_limits(som: KiteConnect) -> None:
    assert len(som.ltp(*(["NSE:INFY"] * 1000))) == 1
    with pytest.raises(kex.InputException):
        som.ltp(*(["NSE:INFY"] * 1001))
    with pytest.raises(kex.InputException):
        som.quote(*(["NSE:INFY"] * 501))


# --- historical candles ----------------------------------------------------------------------

@pytest.mark.parametrize("interval", INTERVALS)
def test_historical_every_interval_ends_at_now(som: KiteConnect, interval: str) -> None:
    start = NOW - timedelta(days=20 if interval != "day" else 60)
    candles = som.historical_data(INFY, start.replace(tzinfo=None), NOW.replace(tzinfo=None) + timedelta(hours=5),
                                  interval)
    assert candles, interval
    dates = [c["date"] for c in candles]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    assert all(d.utcoffset() == timedelta(hours=5, minutes=30) for d in dates)
    assert dates[-1] <= NOW, "nothing after the simulated now"
    for c in candles:
        assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
        assert c["volume"] >= 0
    if interval == "day":
        assert all((d.hour, d.minute) == (0, 0) for d in dates)
        assert dates[-1].date() == NOW.date()
    else:
        assert dates[-1].date() == NOW.date()


def test_candles_consistent_across_intervals_and_with_ltp(som: KiteConnect) -> None:
    day_start = datetime(2026, 11, 25, 9, 15)
    minute = som.historical_data(INFY, day_start, NOW.replace(tzinfo=None), "minute")
    ltp = som.ltp(INFY)[str(INFY)]["last_price"]
    ohlc = som.ohlc(INFY)[str(INFY)]["ohlc"]
    # The bar in progress at `now` closes at the LTP, and the day so far matches the quote.
    assert minute[-1]["close"] == ltp
    assert minute[0]["open"] == ohlc["open"]
    assert max(c["high"] for c in minute) == ohlc["high"]
    assert min(c["low"] for c in minute) == ohlc["low"]
    day = som.historical_data(INFY, date(2026, 11, 25), date(2026, 11, 25), "day")
    assert len(day) == 1
    assert (day[0]["open"], day[0]["high"], day[0]["low"], day[0]["close"]) == (
        ohlc["open"], ohlc["high"], ohlc["low"], ltp)
    for interval, size in (("5minute", 5), ("15minute", 15), ("60minute", 60)):
        bars = som.historical_data(INFY, day_start, NOW.replace(tzinfo=None), interval)
        for bar in bars:
            inside = [c for c in minute if bar["date"] <= c["date"] < bar["date"] + timedelta(minutes=size)]
            assert inside, (interval, bar["date"])
            assert bar["open"] == inside[0]["open"] and bar["close"] == inside[-1]["close"]
            assert bar["high"] == max(c["high"] for c in inside)
            assert bar["low"] == min(c["low"] for c in inside)
            assert bar["volume"] == sum(c["volume"] for c in inside)
        assert bars[-1]["close"] == ltp
    # The previous trading day's close (the 24th is a holiday) is what ohlc.close reports.
    previous = som.historical_data(INFY, date(2026, 11, 20), date(2026, 11, 24), "day")
    assert previous[-1]["date"].date() == date(2026, 11, 23)
    assert previous[-1]["close"] == ohlc["close"]


def test_historical_oi_column(som: KiteConnect) -> None:
    candles = som.historical_data(INFY, date(2026, 11, 20), date(2026, 11, 25), "day", oi=True)
    assert candles and all(c["oi"] == 0 for c in candles)


@pytest.mark.parametrize(("interval", "limit"), [("minute", 60), ("5minute", 100), ("30minute", 200),
                                                 ("60minute", 400), ("day", 2000)])
def test_historical_span_limits(som: KiteConnect, interval: str, limit: int) -> None:
    end = date(2026, 11, 25)
    som.historical_data(INFY, end - timedelta(days=limit), end, interval)
    with pytest.raises(kex.InputException) as info:
        som.historical_data(INFY, end - timedelta(days=limit + 1), end, interval)
    assert info.value.code == 400 and "max limit" in str(info.value)


@pytest.mark.parametrize(("token", "start", "end", "interval"), [
    (INFY, "2026-11-20", "2026-11-25", "2minute"),
    (INFY, "2026-11-25", "2026-11-20", "day"),
    (INFY, "20-11-2026", "2026-11-25", "day"),
    (INFY, "", "2026-11-25", "day"),
    (999999999, "2026-11-20", "2026-11-25", "day"),
    ("abc", "2026-11-20", "2026-11-25", "day"),
])
def test_historical_bad_parameters(som: KiteConnect, token: object, start: str, end: str, interval: str) -> None:
    with pytest.raises(kex.InputException) as info:
        som.historical_data(token, start, end, interval)
    assert info.value.code == 400


def test_historical_future_range_is_empty(som: KiteConnect) -> None:
    assert som.historical_data(INFY, date(2026, 11, 26), date(2026, 11, 27), "minute") == []


# --- errors and the envelope ------------------------------------------------------------------

def test_unknown_route_wrong_method_and_bad_token_use_the_envelope(broker: RunningBroker,
                                                                    som: KiteConnect) -> None:
    auth = {"Authorization": f"token {som.api_key}:{som.access_token}", "X-Kite-Version": "3"}
    _envelope_error(broker.request("GET", "/nope", headers=auth), 404, "GeneralException")
    _envelope_error(broker.request("GET", "/user/profile/extra", headers=auth), 404, "GeneralException")
    body = _envelope_error(broker.request("POST", "/user/profile", headers=auth), 405, "GeneralException")
    assert body["message"] == "Request method not allowed"
    _envelope_error(broker.request("PATCH", "/orders", headers=auth), 405, "GeneralException")
    assert broker.request("HEAD", "/quote", headers=auth).status_code == 405
    _envelope_error(broker.request("GET", "/user/profile"), 403, "TokenException")
    _envelope_error(broker.request("GET", "/user/profile", headers={"Authorization": "token keysom0001:bad"}),
                    403, "TokenException")
    # Som's token with Sai's key is no session at all.
    _envelope_error(broker.request("GET", "/user/profile",
                                   headers={"Authorization": f"token keysai0001:{som.access_token}"}),
                    403, "TokenException")
    # An unknown variety is a routing error, as on Kite.
    with pytest.raises(kex.GeneralException) as info:
        som.place_order(variety="bo", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
                        product="CNC", order_type="LIMIT", price=1000)
    assert info.value.code == 405


def test_token_exception_runs_the_session_hook(broker: RunningBroker) -> None:
    kite = KiteConnect("keysom0001", root=broker.url, access_token="0" * 32)
    calls: list[int] = []
    kite.set_session_expiry_hook(lambda: calls.append(1))
    with pytest.raises(kex.TokenException) as info:
        kite.profile()
    assert info.value.code == 403 and calls == [1]


def test_login_rejects_wrong_checksum_reuse_and_unknown_key(broker: RunningBroker) -> None:
    def request_token(api_key: str) -> str:
        r = requests.get(f"{broker.url}/connect/login", params={"api_key": api_key, "v": 3},
                         allow_redirects=False, timeout=5)
        assert r.status_code == 302
        return r.headers["Location"].split("request_token=")[1].split("&")[0]

    kite = KiteConnect("keysom0001", root=broker.url)
    token = request_token("keysom0001")
    with pytest.raises(kex.TokenException, match="invalid or has expired") as info:
        kite.generate_session(token, api_secret="not-the-secret")  # told apart from nothing else
    assert info.value.code == 403
    kite.generate_session(token, api_secret="secret-som-S3CR3T")  # one failed checksum does not burn it
    with pytest.raises(kex.TokenException, match="invalid or has expired"):
        kite.generate_session(token, api_secret="secret-som-S3CR3T")
    with pytest.raises(kex.TokenException):  # another key's request token
        KiteConnect("keysai0001", root=broker.url).generate_session(token, api_secret="secret-sai-S3CR3T")
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": "nobody", "v": 3}, allow_redirects=False,
                     timeout=5)
    _envelope_error(r, 400, "InputException")
    r = requests.get(f"{broker.url}/connect/login", params={"api_key": "keyliz0001", "v": 3},
                     allow_redirects=False, timeout=5)
    _envelope_error(r, 400, "InputException")  # a live env file is never a paper account


def test_logout_revokes_the_token(broker: RunningBroker) -> None:
    kite = broker.kite("Sai")
    assert kite.invalidate_access_token() is True
    with pytest.raises(kex.TokenException):
        kite.profile()


# --- admin and audit --------------------------------------------------------------------------

def test_health_shows_the_simulated_now(broker: RunningBroker) -> None:
    health = broker.health()
    assert health["status"] == "ok"
    assert abs((datetime.fromisoformat(health["now"]) - NOW).total_seconds()) < 1
    assert health["rate_limits"] is False and health["instruments"] == len(SYMBOLS)


def test_accounts_lists_paper_accounts_only(broker: RunningBroker) -> None:
    accounts = {a["user_name"]: a for a in broker.accounts()}
    assert set(accounts) == {"Som", "Sai"}
    assert accounts["Sai"]["api_key_fingerprint"] == api_key_fingerprint("keysai0001")
    assert "keysai0001" not in json.dumps(accounts)  # issue 15 item 9: never the full key
    assert accounts["Sai"]["cash"] == pytest.approx(250_000.0)


def test_audit_records_each_request_with_its_own_key(broker: RunningBroker, som: KiteConnect,
                                                     sai: KiteConnect) -> None:
    seen = len(broker.audit())
    som.profile()
    som.ltp("NSE:INFY")
    sai.holdings()
    broker.request("GET", "/nope")
    with pytest.raises(kex.TokenException):
        KiteConnect("keysom0001", root=broker.url, access_token="bad").profile()
    rows = broker.audit()[seen:]  # the clock stands still: `since` cannot tell these apart
    assert [(r["api_key"], r["method"], r["path"], r["status"]) for r in rows] == [
        ("keysom0001", "GET", "/user/profile", 200),
        ("keysom0001", "GET", "/quote/ltp", 200),
        ("keysai0001", "GET", "/portfolio/holdings", 200),
        (None, "GET", "/nope", 404),
        (None, "GET", "/user/profile", 403),  # a failed authentication is never the named account's
    ]
    assert all(set(r) == {"time", "wall_time", "api_key", "method", "path", "status"} for r in rows)
    assert all(isinstance(r["wall_time"], float) for r in rows)
    sai_rows = broker.audit(api_key="keysai0001")
    assert sai_rows and all(r["api_key"] == "keysai0001" for r in sai_rows)
    assert ("POST", "/session/token") in {(r["method"], r["path"]) for r in sai_rows}
    assert broker.audit(since=NOW + timedelta(seconds=1)) == []
    assert len(broker.audit(since=NOW.replace(tzinfo=None).isoformat())) >= len(rows)
    _envelope_error(broker.request("GET", "/paper/audit", params={"since": "yesterday"}), 400, "InputException")


def test_log_file_holds_no_secrets(broker: RunningBroker, som: KiteConnect) -> None:
    som.profile()
    text = broker.log_text()
    assert "GET /user/profile 200" in text
    for secret in ("secret-som-S3CR3T", "secret-sai-S3CR3T", som.access_token, "keysom0001", "keysai0001"):
        assert secret not in text


def test_every_response_has_a_content_type(broker: RunningBroker, som: KiteConnect) -> None:
    auth = {"Authorization": f"token {som.api_key}:{som.access_token}"}
    for method, path in (("GET", "/instruments"), ("GET", "/user/profile"), ("GET", "/paper/health"),
                         ("DELETE", "/nothing"), ("GET", "/quote/ltp?i=NSE:INFY")):
        r = broker.request(method, path, headers=auth)
        assert r.headers.get("Content-Type") in ("application/json", "text/csv"), (method, path)
        assert int(r.headers["Content-Length"]) == len(r.content)


def test_keep_alive_connection_is_reused(som: KiteConnect) -> None:
    # Many requests over the client's one session: none may fail or hang.
    for _ in range(50):
        assert som.ltp("NSE:TCS")["NSE:TCS"]["last_price"] > 0


def test_concurrent_clients_each_audited_under_their_own_key(broker: RunningBroker) -> None:
    import threading

    clients = [("Som", broker.kite("Som")) for _ in range(3)] + [("Sai", broker.kite("Sai")) for _ in range(3)]
    seen = len(broker.audit())
    errors: list[BaseException] = []

    def work(kite: KiteConnect) -> None:
        try:
            for i in range(20):
                (kite.ltp, kite.ohlc)[i % 2]("NSE:INFY")
                kite.margins("equity")
                kite.historical_data(INFY, date(2026, 11, 25), date(2026, 11, 25), "15minute")
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(kite,)) for _, kite in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    rows = broker.audit()[seen:]
    assert len(rows) == 6 * 60 and all(r["status"] == 200 for r in rows)
    assert sum(r["api_key"] == "keysom0001" for r in rows) == 3 * 60
    assert sum(r["api_key"] == "keysai0001" for r in rows) == 3 * 60


def test_audit_carries_the_order_id_of_a_placed_order(broker: RunningBroker, som: KiteConnect) -> None:
    seen = len(broker.audit())
    price = round(som.ltp("NSE:INFY")["NSE:INFY"]["last_price"] * 0.95, 1)
    order_id = som.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                               quantity=1, product="CNC", order_type="LIMIT", price=price, tag="srvaudit")
    som.cancel_order(variety="regular", order_id=order_id)
    rows = broker.audit()[seen:]
    placed = [r for r in rows if r["method"] == "POST" and r["path"] == "/orders/regular"]
    assert placed == [{"time": placed[0]["time"], "wall_time": placed[0]["wall_time"], "api_key": "keysom0001",
                       "method": "POST", "path": "/orders/regular", "status": 200, "order_id": order_id}]
    cancelled = [r for r in rows if r["method"] == "DELETE"]
    assert cancelled and "order_id" not in cancelled[0], "only a request that created an order carries it"
