"""The dashboard in a real browser (Selenium + Debian's headless chromium) over a real fleet: two
paper users under a real supervisord, the real paper broker on a file clock (10x: a few simulated
minutes), each user holding shares bought through the real client.

Checked: both users' rows with the broker's positions and P&L; a pause made from the CLI shows
within 5 s without a reload; a trader stopped with SIGSTOP is flagged stale within 15 s plus one
refresh; a trader killed with SIGKILL shows its restart and runs again; the user page's holdings
match the broker's; with a token, the buttons pause and resume a user, and halt and unhalt one (the
halt file, and an open bot entry order cancelled by the halt); without a token a POST is refused
and changes nothing; the browser logs no JavaScript error. Screenshots of each page are kept in
an artefacts folder printed in the test output.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fleet.web.actions import available_actions
from kitefleet.clock import IST
from kitefleet.halt import halt_file
from kitefleet.home import Home
from kitefleet.pause import pause_file
from kitefleet.state import StateStore
from tests.integration.supervision.test_supervisord import FAST, start_supervisord, stop_supervisord, wait_state
from tests.integration.web.server import WebServer, csrf_of, start_web
from tests.support.broker import RunningBroker, clock_file, start_broker
from tests.support.fleet import fleet_home, orchestrator, poll
from workers.intents import IntentLog, make_tag, send_order_once
from workers.ledger import ADOPTED, add_lot, ledger_of, lot

pytestmark = [pytest.mark.browser, pytest.mark.supervisord]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
START = __import__("datetime").datetime(2026, 11, 25, 10, 0, tzinfo=IST)
BUYS = {"Som": ("INFY", 10), "Sai": ("SBIN", 7)}


@dataclass
class Fleet:
    home: Home
    clock: str
    broker: RunningBroker
    web: WebServer
    artefacts: Path


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    root = Path(tempfile.mkdtemp(prefix="kfweb-"))
    artefacts = Path(tempfile.mkdtemp(prefix="kitefleet-web-artefacts-"))
    print(f"\nscreenshots: {artefacts}")
    home, _ = fleet_home(root / "h", {"Som": {}, "Sai": {}}, clock_at=START)
    clock = clock_file(home.root / "clock", START, speed=10)
    broker = start_broker(home, clock=clock, symbols=["INFY", "SBIN", "TCS"])
    sv = web = None
    try:
        from tests.support.homes import write_env

        for user in BUYS:
            write_env(home, user, **{"KITE_ROOT": broker.url, **{k: "off" for k in (
                "SCHEDULE_UPDATE_CNC_STOPLOSS", "SCHEDULE_HOURLY_CANDLE_WATCHDOG", "SCHEDULE_PATTERN_DAILY",
                "SCHEDULE_PLACE_ORDERS_DAILY")}})
        for user, (symbol, qty) in BUYS.items():
            kite = broker.kite(user)
            ltp = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"]
            # a marketable limit (the API refuses market orders without market protection)
            kite.place_order(variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY",
                             quantity=qty, product="CNC", order_type="LIMIT", price=round(ltp * 1.02, 0))
            poll(lambda k=kite: any(o["status"] == "COMPLETE" for o in k.orders()), 30, f"{user}'s buy filled")
        conf = orchestrator(home, "supervisor-conf", "--external-broker", *FAST)
        assert conf.returncode == 0, conf.stderr
        sv = start_supervisord(home, clock)
        for user in BUYS:
            wait_state(home, f"trader:{user}", "RUNNING")
        web = start_web(home, clock=clock)
        yield Fleet(home, clock, broker, web, artefacts)
    finally:
        if web is not None:
            web.stop()
        if sv is not None:
            stop_supervisord(sv)
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(fleet: Fleet) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000",
                "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"JavaScript errors in the browser: {errors}"
    finally:
        driver.quit()


def text_of(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def broker_view(fleet: Fleet, user: str) -> dict[str, Any]:
    kite = fleet.broker.kite(user)
    held: dict[str, int] = {}
    for row in kite.holdings():
        held[row["tradingsymbol"]] = held.get(row["tradingsymbol"], 0) + row["quantity"] + row["t1_quantity"]
    net = [p for p in kite.positions()["net"] if p["quantity"]]
    for p in net:
        held[p["tradingsymbol"]] = held.get(p["tradingsymbol"], 0) + p["quantity"]
    value = sum(p["quantity"] * p["last_price"] for p in net)
    return {"held": held, "positions": len(net), "value": value,
            "pnl": sum(p["pnl"] for p in kite.positions()["day"])}


def test_fleet_page_shows_both_users_with_the_brokers_positions_and_pnl(fleet: Fleet, browser: Any) -> None:
    browser.get(fleet.web.url + "/")
    for user in BUYS:
        poll(lambda u=user: text_of(browser, f"#row-{u} .broker .positions") == "1", 90,
             f"{user}'s broker figures on the fleet page")
    browser.save_screenshot(str(fleet.artefacts / "fleet.png"))
    for user in BUYS:
        truth = broker_view(fleet, user)
        assert truth["positions"] == 1
        shown = float(text_of(browser, f"#row-{user} .pnl").split()[0].replace(",", ""))
        # prices move with the 10x clock between the dashboard's summary and ours: a loose bound
        assert abs(shown - truth["pnl"]) <= 0.02 * truth["value"] + 50, (user, shown, truth)
        assert "RUNNING" in text_of(browser, f"#row-{user} .sv")


def test_a_pause_from_the_cli_shows_within_5_seconds_without_a_reload(fleet: Fleet, browser: Any) -> None:
    browser.get(fleet.web.url + "/")
    browser.execute_script("window.__not_reloaded = 42;")
    assert "PAUSED" not in text_of(browser, "#row-Som .flags")
    out = orchestrator(fleet.home, "pause", "Som", "--reason", "cli", clock=fleet.clock)
    assert out.returncode == 0, out.stderr
    start = time.monotonic()
    poll(lambda: "PAUSED" in text_of(browser, "#row-Som .flags"), 5, "PAUSED on Som's row")
    print(f"pause shown after {time.monotonic() - start:.1f}s")
    assert browser.execute_script("return window.__not_reloaded;") == 42
    assert "PAUSED" not in text_of(browser, "#row-Sai .flags")
    assert orchestrator(fleet.home, "resume", "Som", clock=fleet.clock).returncode == 0
    poll(lambda: "PAUSED" not in text_of(browser, "#row-Som .flags"), 5, "Som's pause gone")


def test_a_trader_stopped_with_sigstop_is_flagged_stale(fleet: Fleet, browser: Any) -> None:
    browser.get(fleet.web.url + "/")
    pid = wait_state(fleet.home, "trader:Som", "RUNNING")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        poll(lambda: "STALE" in text_of(browser, "#row-Som .heartbeat"), 15 + 2 + 3, "Som flagged STALE")
        print(f"stale shown after {time.monotonic() - start:.1f}s")
        assert "STALE" not in text_of(browser, "#row-Sai .heartbeat")
        browser.save_screenshot(str(fleet.artefacts / "fleet-stale.png"))
    finally:
        os.kill(pid, signal.SIGCONT)
    poll(lambda: "STALE" not in text_of(browser, "#row-Som .heartbeat"), 30, "Som fresh again")


def test_a_trader_killed_with_sigkill_shows_its_restart_and_runs_again(fleet: Fleet, browser: Any) -> None:
    browser.get(fleet.web.url + "/")
    poll(lambda: text_of(browser, "#row-Sai .restarts") == "0", 10, "Sai's restart count 0")
    pid = wait_state(fleet.home, "trader:Sai", "RUNNING")["pid"]
    os.kill(pid, signal.SIGKILL)
    poll(lambda: text_of(browser, "#row-Sai .restarts") == "1", 60, "Sai's restart counted")
    new = wait_state(fleet.home, "trader:Sai", "RUNNING")["pid"]
    assert new != pid
    poll(lambda: "RUNNING" in text_of(browser, "#row-Sai .sv") and f"pid {new}" in text_of(browser, "#row-Sai .sv"),
         30, "Sai running again under its new pid")
    poll(lambda: "STALE" not in text_of(browser, "#row-Sai .heartbeat"), 30, "Sai's fresh heartbeat")


def test_the_user_page_holdings_match_the_brokers(fleet: Fleet, browser: Any) -> None:
    for user in BUYS:
        browser.get(fleet.web.url + f"/user/{user}")
        poll(lambda: "waiting" not in text_of(browser, "#unmanaged") and text_of(browser, "#unmanaged tbody tr"),
             60, f"{user}'s holdings")
        rows = browser.find_elements("css selector", "#unmanaged tbody tr[data-symbol]")
        shown = {r.get_attribute("data-symbol"): int(r.find_element("css selector", ".qty").text) for r in rows}
        assert shown == broker_view(fleet, user)["held"]
        assert BUYS[user][0] in text_of(browser, "#timeline")
        browser.save_screenshot(str(fleet.artefacts / f"user-{user}.png"))


def test_token_buttons_pause_and_resume_a_user(fleet: Fleet, browser: Any) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    web = start_web(fleet.home, "--token", clock=fleet.clock)
    try:
        token = (fleet.home.run_dir / "web.token").read_text().strip()
        browser.get(web.url + "/user/Sai")
        assert browser.current_url.endswith("/login")
        browser.find_element("id", "token").send_keys(token)
        browser.find_element("id", "login").click()
        poll(lambda: not browser.current_url.endswith("/login"), 20, "the login's redirect to the fleet page")
        browser.get(web.url + "/user/Sai")
        buttons = ["pause", "resume"] + (["halt", "unhalt"] if "halt" in available_actions() else [])
        for name in buttons:
            browser.find_element("id", f"action-{name}").click()
            WebDriverWait(browser, 10).until(ec.alert_is_present())
            browser.switch_to.alert.accept()
            poll(lambda: text_of(browser, "#action-result"), 60, f"{name}'s result")
            assert text_of(browser, "#action-result") == "done", browser.page_source[-2000:]
            if name == "pause":
                assert pause_file(fleet.home, "Sai").exists()
            elif name == "resume":
                assert not pause_file(fleet.home, "Sai").exists()
            browser.find_element("id", "back").click()
        # a dismissed confirmation sends nothing
        browser.find_element("id", "action-pause").click()
        WebDriverWait(browser, 10).until(ec.alert_is_present())
        browser.switch_to.alert.dismiss()
        assert not pause_file(fleet.home, "Sai").exists()
        browser.save_screenshot(str(fleet.artefacts / "user-Sai-token.png"))
    finally:
        web.stop()


def log_in(browser: Any, web: WebServer, home: Home, user: str) -> None:
    """Log in to a token dashboard through its form, for real, and open ``user``'s page."""
    token = (home.run_dir / "web.token").read_text().strip()
    browser.get(web.url + "/login")
    browser.delete_all_cookies()  # 127.0.0.1's cookies are shared by every port: log in here, for real
    browser.get(web.url + f"/user/{user}")
    assert browser.current_url.endswith("/login")
    browser.find_element("id", "token").send_keys(token)
    browser.find_element("id", "login").click()
    poll(lambda: not browser.current_url.endswith("/login"), 20, "the login's redirect")
    browser.get(web.url + f"/user/{user}")


def resting_entry(fleet: Fleet, user: str, symbol: str) -> str:
    """An entry as place_orders_daily leaves one that has not filled: an intent of its entry tag,
    sent through the intent protocol, a BUY LIMIT 5 % under the LTP (inside the circuit band),
    in whole rupees: a multiple of every tick size."""
    kite = fleet.broker.kite(user)
    ltp = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"]
    session = START.date()  # the 10x clock stays within START's session for the module
    params = {"variety": "regular", "exchange": "NSE", "tradingsymbol": symbol, "transaction_type": "BUY",
              "quantity": 3, "product": "CNC", "order_type": "LIMIT", "price": float(int(ltp * 0.95)),
              "validity": "DAY"}
    result = send_order_once(kite, IntentLog(StateStore(fleet.home, user, "paper")),
                             make_tag(user, "place_orders_daily", session, symbol, "entry"), params,
                             purpose="entry", job="place_orders_daily", session=session)
    assert result.broker_id
    return str(result.broker_id)


def order_status(fleet: Fleet, user: str, order_id: str) -> str:
    order = next(o for o in fleet.broker.kite(user).orders() if o["order_id"] == order_id)
    return str(order["status"]) if order["status"] != "REJECTED" else f"REJECTED: {order.get('status_message')}"


@pytest.mark.skipif("halt" not in available_actions() or "unhalt" not in available_actions(),
                    reason="this tree's CLI has no halt/unhalt")
def test_token_buttons_halt_and_unhalt_a_user_and_the_halt_cancels_an_open_entry(fleet: Fleet, browser: Any) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    order = resting_entry(fleet, "Som", "TCS")
    assert order_status(fleet, "Som", order) == "OPEN"

    # without a token: no buttons, and a POST (even with a confirmation) is refused and does nothing
    page = requests.get(fleet.web.url + "/user/Som", timeout=30).text
    assert "action-halt" not in page and 'name="csrf"' not in page
    refused = requests.post(fleet.web.url + "/user/Som/action/halt", data={"confirm": "yes", "csrf": "0" * 32},
                            timeout=30)
    assert refused.status_code == 403, refused.text
    assert not halt_file(fleet.home, "Som").exists()
    assert order_status(fleet, "Som", order) == "OPEN"

    web = start_web(fleet.home, "--token", clock=fleet.clock)
    try:
        log_in(browser, web, fleet.home, "Som")
        csrf_of(browser.page_source)  # a token page carries the CSRF field its buttons post

        browser.find_element("id", "action-halt").click()
        WebDriverWait(browser, 10).until(ec.alert_is_present())
        assert "Halt Som?" in browser.switch_to.alert.text
        browser.switch_to.alert.accept()
        poll(lambda: text_of(browser, "#action-result"), 120, "halt's result")
        assert text_of(browser, "#action-result") == "done", browser.page_source[-3000:]
        assert halt_file(fleet.home, "Som").exists()
        # the halt command cancels through a process of Som's before it answers
        assert order_status(fleet, "Som", order) == "CANCELLED"
        assert f"entry {order}: CANCELLED" in browser.page_source
        assert not halt_file(fleet.home, "Sai").exists()
        browser.save_screenshot(str(fleet.artefacts / "user-Som-halted.png"))

        browser.find_element("id", "back").click()
        poll(lambda: "HALTED" in text_of(browser, "#halt-flag"), 30, "HALTED on Som's page")
        browser.find_element("id", "action-unhalt").click()
        WebDriverWait(browser, 10).until(ec.alert_is_present())
        browser.switch_to.alert.accept()
        poll(lambda: text_of(browser, "#action-result"), 60, "unhalt's result")
        assert text_of(browser, "#action-result") == "done", browser.page_source[-3000:]
        assert not halt_file(fleet.home, "Som").exists()
        browser.find_element("id", "back").click()
        poll(lambda: not text_of(browser, "#halt-flag"), 30, "HALTED gone from Som's page")
    finally:
        web.stop()


def bot_lot(fleet: Fleet, user: str, symbol: str, qty: int) -> None:
    """A position the bot owns: bought at the broker and recorded as a lot in the user's ledger."""
    kite = fleet.broker.kite(user)
    ltp = kite.ltp(f"NSE:{symbol}")[f"NSE:{symbol}"]["last_price"]
    before = sum(1 for o in kite.orders() if o["status"] == "COMPLETE")
    kite.place_order(variety="regular", exchange="NSE", tradingsymbol=symbol, transaction_type="BUY",
                     quantity=qty, product="CNC", order_type="LIMIT", price=round(ltp * 1.02, 0))
    poll(lambda: sum(1 for o in kite.orders() if o["status"] == "COMPLETE") > before, 30, f"{user}'s {symbol} buy")
    with StateStore(fleet.home, user, "paper").transaction() as state:
        add_lot(ledger_of(state), symbol, lot(qty, ltp, START.date(), ADOPTED))


@pytest.mark.skipif("halt-flatten" not in available_actions(), reason="this tree's CLI has no halt --flatten")
def test_token_button_halt_and_flatten_sells_what_the_bot_owns_and_leaves_a_persons_holding(
        fleet: Fleet, browser: Any) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    bot_lot(fleet, "Sai", "TCS", 4)  # Sai's 7 SBIN were bought by hand in the fixture: a person's holding
    kite = fleet.broker.kite("Sai")

    # without a token the button is absent and its POST is refused
    page = requests.get(fleet.web.url + "/user/Sai", timeout=30).text
    assert "action-halt-flatten" not in page
    refused = requests.post(fleet.web.url + "/user/Sai/action/halt-flatten",
                            data={"confirm": "yes", "csrf": "0" * 32}, timeout=30)
    assert refused.status_code == 403, refused.text
    assert not halt_file(fleet.home, "Sai").exists()
    assert not [o for o in kite.orders() if o["transaction_type"] == "SELL"]

    web = start_web(fleet.home, "--token", clock=fleet.clock)
    try:
        log_in(browser, web, fleet.home, "Sai")
        browser.find_element("id", "action-halt-flatten").click()
        WebDriverWait(browser, 10).until(ec.alert_is_present())
        assert "Halt Sai AND sell" in browser.switch_to.alert.text
        browser.switch_to.alert.accept()
        poll(lambda: text_of(browser, "#action-result"), 180, "halt --flatten's result")
        assert text_of(browser, "#action-result") == "done", browser.page_source[-3000:]
        browser.save_screenshot(str(fleet.artefacts / "user-Sai-halted-flattened.png"))

        assert halt_file(fleet.home, "Sai").exists()
        sells = [o for o in kite.orders() if o["transaction_type"] == "SELL"]
        assert {o["tradingsymbol"] for o in sells} == {"TCS"}, sells
        assert sum(o["quantity"] for o in sells) == 4
        # the person's SBIN: never sold, still all there
        assert broker_view(fleet, "Sai")["held"].get("SBIN") == 7

        browser.find_element("id", "back").click()
        poll(lambda: "HALTED" in text_of(browser, "#halt-flag"), 30, "HALTED on Sai's page")
        browser.find_element("id", "action-unhalt").click()
        WebDriverWait(browser, 10).until(ec.alert_is_present())
        browser.switch_to.alert.accept()
        poll(lambda: text_of(browser, "#action-result"), 60, "unhalt's result")
        assert not halt_file(fleet.home, "Sai").exists()
    finally:
        web.stop()


def test_no_secret_in_any_page_or_api_answer_with_live_sessions(fleet: Fleet, browser: Any) -> None:
    """The pages of a fleet with real sessions (traders running, summaries read from the broker)
    carry none of each user's API key, API secret or access token, nor the dashboard's token."""
    import json

    secrets = []
    for user in BUYS:
        secrets += [f"key{user.lower()}0001", f"secret-{user.lower()}-S3CR3T"]  # write_env's values
        session = fleet.home.session_file(user)
        if session.exists():
            secrets += [str(v) for k, v in json.loads(session.read_text()).items() if "token" in k and v]
    assert len(secrets) > 2 * len(BUYS), "no access token on disk: the search would not cover tokens"
    token_file = fleet.home.run_dir / "web.token"
    if token_file.exists():
        secrets.append(token_file.read_text().strip())
    answers = []
    for path in ("/", "/api/fleet", *(p for u in BUYS for p in (f"/user/{u}", f"/api/user/{u}")), "/login"):
        answers.append(requests.get(fleet.web.url + path, timeout=30).text)
        browser.get(fleet.web.url + path)
        answers.append(browser.page_source)
    blob = "\n".join(answers)
    assert "SBIN" in blob and "INFY" in blob  # the pages really show the users' positions
    for secret in secrets:
        assert secret not in blob, f"a secret ({len(secret)} characters) appears in a page"
