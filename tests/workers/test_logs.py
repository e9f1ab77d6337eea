"""workers/logs.py: secrets are redacted in log files, in streams written in pieces, and before describe() cuts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.homes import make_home
from workers.logs import RedactingStream, register_secret, setup_logging

API_KEY = "kq7v3redactkey9x2m"
API_SECRET = "s3cr3t-redact-8fJ2kQpL0wZ"
TOKEN = "tok-redact-Xb93LmQ2vR7nT5"
SHOWN_KEY = API_KEY[:4] + "***"


def _assert_clean(text: str, where: str) -> None:
    for value in (API_KEY, API_SECRET, TOKEN):
        assert value not in text, f"{value} leaked into {where}:\n{text}"


# --- in-process: the logging handlers ----------------------------------------------------------
@pytest.fixture
def job_log(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    home = make_home(tmp_path / "home")
    register_secret(API_SECRET)
    register_secret(TOKEN)
    register_secret(API_KEY, keep=4)
    log = setup_logging(home, "Som", "redact_job", console=False)
    try:
        yield log, home.user_logs_dir("Som") / "redact_job.log"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_redact_message_args_and_traceback_in_the_log_file(job_log: tuple[logging.Logger, Path]) -> None:
    log, path = job_log
    log.info(f"in the message: key {API_KEY} secret {API_SECRET} token {TOKEN}")
    log.warning("in %%s arguments: key %s secret %s token %s", API_KEY, API_SECRET, TOKEN)
    log.warning("in a %%r argument: %r", {"api_key": API_KEY, "access_token": TOKEN})
    logging.getLogger("urllib3.connectionpool").error("GET /session/token?api_secret=%s", API_SECRET)
    try:
        raise RuntimeError(f"login failed for {API_KEY} with {API_SECRET} and {TOKEN}")
    except RuntimeError:
        log.exception("in a traceback")
    log.info("and a stack", stack_info=True, extra={"note": TOKEN})
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    _assert_clean(text, str(path))
    # The lines are there, with the secrets replaced (and the key's first characters kept).
    assert text.count(SHOWN_KEY) >= 4 and "in a traceback" in text and "RuntimeError: login failed" in text
    assert "secret ***" in text and "token ***" in text


def test_redact_stream_sees_a_secret_written_in_pieces(tmp_path: Path) -> None:
    register_secret(TOKEN)
    with open(tmp_path / "out", "w", encoding="utf-8") as raw:
        stream = RedactingStream(raw)
        print("token:", TOKEN[:6], end="", file=stream)  # a secret split over several writes
        print(TOKEN[6:], file=stream)
        stream.write("no newline yet " + TOKEN)
        stream.flush()
    text = (tmp_path / "out").read_text(encoding="utf-8")
    assert TOKEN not in text and text == "token: ***\nno newline yet ***"


# --- 5. describe() redacts before truncating ------------------------------------------------------
def test_describe_redacts_a_key_straddling_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import logs
    from workers.broker_errors import describe

    monkeypatch.setattr(logs, "_secrets", {})
    api_key, secret = "straddlekey0123456789", "straddlesecretABCDEFGH"
    logs.register_secret(api_key, keep=4)
    logs.register_secret(secret)
    for prefix in range(185, 201):
        text = describe(RuntimeError("x" * prefix + api_key + " and " + secret))
        assert "straddlekey0" not in text and "straddlesecret" not in text
        # a cut prefix of the key is never left: at most its 4 kept characters
        assert "strad" not in text
