"""workers.broker_errors as a table: (exception, read or write) -> (project error, retried).

One case per row of the module docstring's table, with kiteconnect's and requests' own exception
classes (a refused connection and an invalid URL are produced by requests itself), and a test that
the docstring table and these cases are the same rows, so a row added to one only fails."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests
import urllib3
from kiteconnect import exceptions as kex
from requests import exceptions as rex

import workers.broker_errors as broker_errors
from kitefleet.errors import TokenError
from kitefleet.exitcodes import ExitCode
from workers.broker_errors import BrokerRejected, BrokerUnavailable, WriteOutcomeUnknown, map_error, retryable


def _refused() -> rex.ConnectionError:
    """The ConnectionError requests raises when nothing listens on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))  # bound but not listening: the kernel refuses the connection
        try:
            requests.get(f"http://127.0.0.1:{bound.getsockname()[1]}/orders", timeout=5)
        except rex.ConnectionError as exc:
            return exc
    raise AssertionError("the connection was not refused")


def _invalid_url() -> rex.InvalidURL:
    try:
        requests.get("http://", timeout=5)
    except rex.InvalidURL as exc:
        return exc
    raise AssertionError("requests accepted http://")


def _reset() -> rex.ConnectionError:
    # As requests' adapter wraps urllib3's error for a keep-alive connection reset mid-request.
    return rex.ConnectionError(urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))


@dataclass(frozen=True)
class Row:
    exception: str  # as the docstring names it
    call: str  # "read" or "write"
    make: Callable[[], BaseException]
    error: type[Exception]
    retried: bool

    @property
    def id(self) -> str:
        return f"{self.exception} {self.call}"


TOO_MANY = "Too many requests"
U, W, R = BrokerUnavailable, WriteOutcomeUnknown, BrokerRejected

ROWS = [
    Row("TokenException 403", "read", lambda: kex.TokenException("Incorrect `api_key` or `access_token`.", 403),
        TokenError, False),
    Row("TokenException 403", "write", lambda: kex.TokenException("Incorrect `api_key` or `access_token`.", 403),
        TokenError, False),
    Row("NetworkException 429 Too many requests", "read", lambda: kex.NetworkException(TOO_MANY, 429), U, True),
    Row("NetworkException 429 Too many requests", "write", lambda: kex.NetworkException(TOO_MANY, 429), U, True),
    Row("NetworkException 200 Too many requests", "write", lambda: kex.NetworkException(TOO_MANY, 200), U, True),
    Row("NetworkException 503", "read", lambda: kex.NetworkException("Gateway unavailable", 503), U, True),
    Row("NetworkException 503", "write", lambda: kex.NetworkException("Gateway unavailable", 503), W, False),
    Row("DataException 502", "read", lambda: kex.DataException("Couldn't parse the JSON response", 502), U, True),
    Row("DataException 502", "write", lambda: kex.DataException("Couldn't parse the JSON response", 502), W, False),
    Row("GeneralException 500", "read", lambda: kex.GeneralException("Internal server error", 500), U, True),
    Row("GeneralException 503", "write", lambda: kex.GeneralException("Service unavailable", 503), W, False),
    Row("requests.ConnectionError reset", "read", _reset, U, True),
    Row("requests.ConnectionError reset", "write", _reset, W, False),
    Row("requests.ReadTimeout", "read", lambda: rex.ReadTimeout("Read timed out. (read timeout=7)"), U, True),
    Row("requests.ReadTimeout", "write", lambda: rex.ReadTimeout("Read timed out. (read timeout=7)"), W, False),
    Row("requests.ChunkedEncodingError", "read", lambda: rex.ChunkedEncodingError("IncompleteRead"), U, True),
    Row("requests.ChunkedEncodingError", "write", lambda: rex.ChunkedEncodingError("IncompleteRead"), W, False),
    Row("requests.ContentDecodingError", "read", lambda: rex.ContentDecodingError("bad gzip"), U, True),
    Row("requests.ContentDecodingError", "write", lambda: rex.ContentDecodingError("bad gzip"), W, False),
    Row("requests.ConnectionError refused", "read", _refused, U, True),
    Row("requests.ConnectionError refused", "write", _refused, U, True),
    Row("requests.ConnectTimeout", "read", lambda: rex.ConnectTimeout("Connection timed out"), U, True),
    Row("requests.ConnectTimeout", "write", lambda: rex.ConnectTimeout("Connection timed out"), U, True),
    Row("requests.InvalidURL", "read", _invalid_url, R, False),
    Row("requests.InvalidURL", "write", _invalid_url, W, False),
    Row("requests.TooManyRedirects", "read", lambda: rex.TooManyRedirects("Exceeded 30 redirects."), R, False),
    Row("requests.TooManyRedirects", "write", lambda: rex.TooManyRedirects("Exceeded 30 redirects."), W, False),
    Row("requests.InvalidJSONError", "write", lambda: rex.InvalidJSONError("Out of range float values"), W, False),
    Row("InputException 400", "read", lambda: kex.InputException("Invalid `from` date.", 400), R, False),
    Row("InputException 400", "write", lambda: kex.InputException("Invalid `price`.", 400), R, False),
    Row("OrderException 400", "write", lambda: kex.OrderException("Order not found.", 400), R, False),
    Row("OrderException 500", "write", lambda: kex.OrderException("Order could not be placed."), R, False),
    Row("PermissionException 403", "read", lambda: kex.PermissionException("Insufficient permission.", 403),
        R, False),
    Row("PermissionException 403", "write", lambda: kex.PermissionException("Insufficient permission.", 403),
        R, False),
    # Kite's MarginException and HoldingException: kiteconnect has no class for them.
    Row("GeneralException 400", "read", lambda: kex.GeneralException("Instrument not found.", 400), R, False),
    Row("GeneralException 400", "write", lambda: kex.GeneralException("Insufficient funds. Required margin "
                                                                      "is 95417.84 but available is 0.", 400),
        R, False),
]

EXIT_CODES = {TokenError: ExitCode.TOKEN, U: ExitCode.BROKER_TEMPORARY, W: ExitCode.BROKER_TEMPORARY,
              R: ExitCode.JOB_FAILED}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_exception_maps_to_its_error_and_retry(row: Row) -> None:
    exc = row.make()
    write = row.call == "write"
    mapped = map_error(exc, operation="place_order" if write else "orders", write=write, user="Som")
    assert type(mapped) is row.error
    assert retryable(exc, write=write) is row.retried
    assert mapped.exit_code == EXIT_CODES[row.error]  # type: ignore[attr-defined]
    if isinstance(mapped, BrokerRejected) and isinstance(exc, kex.KiteException):
        # Kite's own words and status reach the log, not a paraphrase.
        assert (mapped.kite_message, mapped.status, mapped.error_type) == (str(exc), exc.code, type(exc).__name__)
    if isinstance(mapped, WriteOutcomeUnknown):
        assert mapped.cause is exc and "reconcile before any resend" in str(mapped)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_each_case_is_the_exception_its_row_names(row: Row) -> None:
    """The label of a row is what the case raises: class, HTTP status, refused or reset."""
    exc = row.make()
    words = row.exception.split()
    assert type(exc).__name__ == words[0].removeprefix("requests."), row.exception
    assert isinstance(exc, requests.RequestException) == words[0].startswith("requests."), row.exception
    if isinstance(exc, kex.KiteException):
        assert exc.code == int(words[1])
        assert (TOO_MANY in row.exception) == (str(exc) == TOO_MANY)
    if "refused" in words:
        assert "Connection refused" in repr(exc)
    if "reset" in words:
        assert "Connection reset" in repr(exc) and "NewConnectionError" not in repr(exc)


_TABLE_ROW = re.compile(r"^ {4}(?P<exception>\S.*?) {2,}(?P<call>read|write) +-> +(?P<error>\w+) +(?P<retried>yes|no)$")


def _docstring_rows() -> list[tuple[str, str, str, bool]]:
    doc = broker_errors.__doc__ or ""
    lines = doc.splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"^ {4}exception +call +-> +error +retried$", line))
    rows = []
    for line in lines[header + 1:]:
        if not line.strip():
            break
        m = _TABLE_ROW.match(line)
        assert m, f"workers/broker_errors.py docstring: a table row that does not parse: {line!r}"
        rows.append((m["exception"], m["call"], m["error"], m["retried"] == "yes"))
    return rows


def test_the_docstring_table_and_the_cases_are_the_same_rows() -> None:
    documented = _docstring_rows()
    tested = [(r.exception, r.call, r.error.__name__, r.retried) for r in ROWS]
    assert len(documented) >= 30
    assert documented == tested
