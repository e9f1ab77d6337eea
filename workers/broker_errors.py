"""What a Kite failure means for the worker: retry, stop for a new login, give up, or reconcile.

kiteconnect raises its own exception classes (chosen by the ``error_type`` of the answer, with
``.code`` the HTTP status; an error_type it has no class for, such as Kite's MarginException or
HoldingException, arrives as GeneralException) and lets ``requests`` exceptions through untouched.
This module maps them onto the project's shallow hierarchy (kitefleet.errors): TokenError (exit 5:
log in again), BrokerUnavailable and WriteOutcomeUnknown (BrokerTemporaryError, exit 7; an unknown
write is resolved by reconciliation, never by sending again), BrokerRejected (BrokerPermanentError,
exit 1, carrying Kite's own message).

One row per (exception, read or write): the error it ends as (``map_error``) and whether it is
retried first (``retryable``). Exceptions are kiteconnect's unless named ``requests.``, with the HTTP
status as ``.code``. tests/workers/test_broker_errors.py runs one case per row and fails when this
table and its cases differ.

    exception                                call     -> error                 retried
    TokenException 403                       read     -> TokenError            no
    TokenException 403                       write    -> TokenError            no
    NetworkException 429 Too many requests   read     -> BrokerUnavailable     yes
    NetworkException 429 Too many requests   write    -> BrokerUnavailable     yes
    NetworkException 200 Too many requests   write    -> BrokerUnavailable     yes
    NetworkException 503                     read     -> BrokerUnavailable     yes
    NetworkException 503                     write    -> WriteOutcomeUnknown   no
    DataException 502                        read     -> BrokerUnavailable     yes
    DataException 502                        write    -> WriteOutcomeUnknown   no
    GeneralException 500                     read     -> BrokerUnavailable     yes
    GeneralException 503                     write    -> WriteOutcomeUnknown   no
    requests.ConnectionError reset           read     -> BrokerUnavailable     yes
    requests.ConnectionError reset           write    -> WriteOutcomeUnknown   no
    requests.ReadTimeout                     read     -> BrokerUnavailable     yes
    requests.ReadTimeout                     write    -> WriteOutcomeUnknown   no
    requests.ChunkedEncodingError            read     -> BrokerUnavailable     yes
    requests.ChunkedEncodingError            write    -> WriteOutcomeUnknown   no
    requests.ContentDecodingError            read     -> BrokerUnavailable     yes
    requests.ContentDecodingError            write    -> WriteOutcomeUnknown   no
    requests.ConnectionError refused         read     -> BrokerUnavailable     yes
    requests.ConnectionError refused         write    -> BrokerUnavailable     yes
    requests.ConnectTimeout                  read     -> BrokerUnavailable     yes
    requests.ConnectTimeout                  write    -> BrokerUnavailable     yes
    requests.InvalidURL                      read     -> BrokerRejected        no
    requests.InvalidURL                      write    -> WriteOutcomeUnknown   no
    requests.TooManyRedirects                read     -> BrokerRejected        no
    requests.TooManyRedirects                write    -> WriteOutcomeUnknown   no
    requests.InvalidJSONError                write    -> WriteOutcomeUnknown   no
    InputException 400                       read     -> BrokerRejected        no
    InputException 400                       write    -> BrokerRejected        no
    OrderException 400                       write    -> BrokerRejected        no
    OrderException 500                       write    -> BrokerRejected        no
    PermissionException 403                  read     -> BrokerRejected        no
    PermissionException 403                  write    -> BrokerRejected        no
    GeneralException 400                     read     -> BrokerRejected        no
    GeneralException 400                     write    -> BrokerRejected        no

A 429 (Kite sometimes sends its body with HTTP 200) was refused before it was processed, and a
refused connection or a connect timeout never reached the broker: both are retried for writes too.
Only GeneralException 5xx is a server fault; another class with a 5xx code (OrderException's
default is 500) is still Kite's refusal. Any other requests exception on a read is a setup problem
(invalid URL, too many redirects).

A write is mapped to BrokerRejected only when Kite itself answered with a refusal (a
KiteException), never from a ``requests`` failure: a body cut off after Kite accepted an order
would otherwise mark the intent failed, and the next run would place a second order. Only a
refused connection proves nothing was sent.
"""

from __future__ import annotations

import requests
from kiteconnect import exceptions as kex

from kitefleet.errors import BrokerPermanentError, BrokerTemporaryError, TokenError
from workers.logs import redact


class BrokerUnavailable(BrokerTemporaryError):
    """The broker did not answer usefully (network, 5xx, rate limited) even after retries."""


class WriteOutcomeUnknown(BrokerTemporaryError):
    """A write (order or GTT) may or may not have reached the broker. Never resend blindly:
    reconcile (order book by tag, GTT list by symbol) and act on what the broker shows."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"{operation}: outcome unknown ({describe(cause)}); reconcile before any resend")
        self.operation = operation
        self.cause = cause


class BrokerRejected(BrokerPermanentError):
    """Kite refused the request for a reason a retry will not fix."""

    def __init__(self, operation: str, error_type: str, message: str, status: int | None) -> None:
        super().__init__(f"{operation}: Kite {error_type} ({status}): {message}")
        self.operation = operation
        self.error_type = error_type
        self.kite_message = message
        self.status = status


def token_error(user: str, detail: str) -> TokenError:
    return TokenError(f"Kite session of {user} is missing, expired or invalid ({detail}); "
                      f"log in again: orchestrator.py login {user}")


def describe(exc: BaseException) -> str:
    """One short line for an exception, secrets redacted. Redaction comes before the cut: a key
    straddling the 200th character would otherwise survive as a prefix no redaction matches."""
    code = getattr(exc, "code", None)
    text = redact(str(exc).strip() or type(exc).__name__)
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}{f' {code}' if code else ''}: {text}"


def is_token(exc: BaseException) -> bool:
    return isinstance(exc, kex.TokenException)


def is_rate_limited(exc: BaseException) -> bool:
    # Kite sometimes sends the 429 body with HTTP 200 (kite-api.md section 4): judge by both.
    return isinstance(exc, kex.NetworkException) and (
        getattr(exc, "code", None) == 429 or "too many requests" in str(exc).lower()
    )


def never_sent(exc: BaseException) -> bool:
    """True when the request provably never reached the server (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        # A refused or unresolvable connection. A reset on a reused keep-alive connection is
        # NOT this: the request may have been read before the reset.
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


#: the answer was cut off or garbled in transit: the server did receive (and may have acted on) it
_TRUNCATED_ANSWER = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)


def is_transient(exc: BaseException) -> bool:
    """A failure a retry may fix (for reads; for writes see ``retryable``)."""
    if isinstance(exc, (kex.NetworkException, kex.DataException)):
        return True
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, *_TRUNCATED_ANSWER)):
        return True
    code = getattr(exc, "code", None)
    return type(exc) is kex.GeneralException and isinstance(code, int) and code >= 500


def retryable(exc: BaseException, *, write: bool) -> bool:
    if is_rate_limited(exc) or never_sent(exc):
        return True
    return not write and is_transient(exc)


def map_error(exc: BaseException, *, operation: str, write: bool, user: str) -> Exception:
    """The project error for a kiteconnect/requests exception that retries did not cure."""
    if is_token(exc):
        return token_error(user, describe(exc))
    if is_rate_limited(exc) or never_sent(exc):
        return BrokerUnavailable(f"{operation}: {describe(exc)} (after retries)")
    if is_transient(exc):
        if write:
            return WriteOutcomeUnknown(operation, exc)
        return BrokerUnavailable(f"{operation}: {describe(exc)} (after retries)")
    if isinstance(exc, kex.KiteException):
        return BrokerRejected(operation, type(exc).__name__, str(exc), getattr(exc, "code", None))
    if isinstance(exc, requests.exceptions.RequestException):
        if write:
            # Not a refused connection, so the request may have reached Kite: only the order book
            # (or GTT list) can tell, never a resend.
            return WriteOutcomeUnknown(operation, exc)
        # Anything else from requests on a read (invalid URL, too many redirects): a setup problem.
        return BrokerRejected(operation, type(exc).__name__, str(exc), None)
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
