"""The dashboard's security model, in one place.

- It binds 127.0.0.1 by default. Any other address needs the token: ``web --host 0.0.0.0`` starts
  with it whether ``--token`` is given or not.
- The token lives in ``run/web.token`` (mode 0600, created on first use with ``secrets``, printed
  once, when created). A token file with any other mode, or not a regular file, is refused: a
  token others could read protects nothing.
- With a token, every page needs the login cookie: the login form takes the token and sets an
  HttpOnly, SameSite=Strict cookie holding a value derived from the token (HMAC), never the token.
  Actions (POST) also need a CSRF token (another HMAC of the token) in the form, and a
  confirmation field the page sets only after the person confirms.
- Without a token the dashboard is read-only: every POST is refused.
- A request whose Host header is not the bound address (or ``localhost`` on a loopback bind, or a
  name given with ``--allow-host``) is refused: a DNS-rebinding page cannot reach it by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
from pathlib import Path

from kitefleet.errors import ConfigError, UsageError
from kitefleet.home import Home, ensure_dir

TOKEN_FILE = "web.token"  # noqa: S105 (a file name, not a password)
COOKIE = "kitefleet_web"
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> str:
    """A bind address given to ``--host``: an IP address or ``localhost`` (a name could resolve to
    anything, and the Host check compares with what was bound)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in LOOPBACK_NAMES:
            raise UsageError(f"--host {host!r} is not an IP address (give one, e.g. 127.0.0.1 or 0.0.0.0); "
                             "names for the Host check go to --allow-host") from None
    return host


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: : every interface, so no one name of its own for the Host check."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Is a request's Host header (``name`` or ``name:port``) one of the ``allowed`` names?"""
    if not header:
        return False
    name = header.strip().lower()
    if name.startswith("["):  # [::1]:8780
        name = name.split("]", 1)[0] + "]"
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in allowed


def token_path(home: Home) -> Path:
    return home.run_dir / TOKEN_FILE


def load_or_create_token(home: Home) -> tuple[str, bool]:
    """The token and whether it was created now (the caller prints a new token once)."""
    path = token_path(home)
    ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_token(path), False
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return token, True


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the dashboard token ({exc.strerror}); delete it to make a new one") \
            from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file; delete it to make a new token")
        if stat.S_IMODE(st.st_mode) != 0o600:
            raise ConfigError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}, the token must be 0600 "
                              f"(others could read it): chmod 600 {path}, or delete it to make a new one")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path}: owned by uid {st.st_uid}, not by the user running the dashboard; "
                              "delete it to make a new one")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            token = fh.read(4096).decode("utf-8", "replace").strip()
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    if len(token) < 16:
        raise ConfigError(f"{path}: the token is empty or too short; delete the file to make a new one")
    return token


def derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), f"kitefleet-web:{purpose}".encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host-header names accepted (without port): the bound address, its loopback aliases, and
    ``--allow-host`` names. A wildcard bind accepts only the names given."""
    names = [*extra]
    if not is_wildcard(host):
        names.append(f"[{host}]" if ":" in host else host)
    if is_loopback(host):
        names += ["127.0.0.1", "localhost", "[::1]"]
    return sorted({n.lower() for n in names})
