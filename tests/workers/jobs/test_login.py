"""workers/jobs/login.py on plain data: the request token from a pasted URL and the session expiry rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kitefleet.clock import IST
from workers.jobs.login import extract_request_token

START = datetime(2026, 11, 25, 8, 30, tzinfo=IST)


@pytest.mark.parametrize(("text", "token"), [
    ("abc123XYZ\n", "abc123XYZ"),
    ("https://127.0.0.1/cb?action=login&status=success&request_token=Tok123456", "Tok123456"),
])
def test_extract_request_token(text: str, token: str) -> None:
    assert extract_request_token(text) == token


@pytest.mark.parametrize("text", ["", "has spaces in it", "https://x/cb?status=cancelled&request_token=abc123",
                                  "https://x/cb?action=login"])
def test_extract_request_token_refuses(text: str) -> None:
    from kitefleet.errors import UsageError

    with pytest.raises(UsageError) as err:
        extract_request_token(text)
    if text:
        assert text not in str(err.value)


def test_session_expiry_rule() -> None:
    from workers.session_file import session_expiry

    assert session_expiry(START) == datetime(2026, 11, 26, 6, 0, tzinfo=IST)
    early = START.replace(hour=5, minute=59)
    assert session_expiry(early) == early.replace(hour=6, minute=0)
    assert session_expiry(START + timedelta(days=1)) == datetime(2026, 11, 27, 6, 0, tzinfo=IST)
