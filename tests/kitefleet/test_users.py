"""kitefleet/users.py: a user name matches the whole string (a trailing newline is refused)."""

from __future__ import annotations

import pytest

from kitefleet.errors import UsageError
from kitefleet.users import validate_user_name


@pytest.mark.parametrize("name", ["Som\n", "Som\r\n", "\nSom", "Som\n\n"])
def test_user_name_with_a_trailing_newline_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid user name"):
        validate_user_name(name)
