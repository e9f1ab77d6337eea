"""``python -m workers notify --user USER``: deliver the user's undelivered events (kitefleet.outbox).

A short job: it reads ``data/<User>/outbox.jsonl`` past the cursor, sends each event through every
URL in the user's ``NOTIFY_URLS`` (one Apprise object for the process, this user's URLs only),
records each (event, URL) in ``outbox.done`` right after the service accepts it, and exits. The
scheduler starts it when the outbox has grown past the cursor and a try is due; the supervisord
listener (fleet/eventlistener.py) starts it with ``--event`` when the user's trader stopped.

Delivery is at-least-once: a kill after a send and before its mark sends that one message again
on the next run, with the same event id in it. A URL that fails keeps the rest of this run's
events for that URL (their order is kept); the next try is due after a back-off (wall clock), and
an event no service took within ``NOTIFY_GIVE_UP_HOURS`` is dropped with a WARNING. At the end of a
run, still under the job lock, the outbox is compacted when its settled part has grown big
(kitefleet.outbox.compact; fault point ``outbox_compact:STEP`` after each of its steps).

``NOTIFY_LEVEL`` decides which events go out (kitefleet.outbox.wanted); the rest are marked
``skipped``. An entry of ``NOTIFY_URLS`` that Apprise cannot read is exit 4 naming its position.

When the env file does not load (exit 4 of the trader), this job still runs with ``NOTIFY_URLS``
and ``NOTIFY_LEVEL`` alone, if the file is 0600 and those two keys parse (``fallback_settings``);
otherwise it records "cannot notify" in ``data/<User>/notify.json`` (status and doctor show it).

``--test``: send one test message through each URL now (the outbox is not used) and print, as
JSON, which positions worked (``orchestrator.py notify-test``). Never a URL.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kitefleet import clock
from kitefleet import outbox as ob
from kitefleet.atomic import atomic_write_json
from kitefleet.errors import AlreadyRunning, ConfigError
from kitefleet.exitcodes import ExitCode
from kitefleet.home import Home
from kitefleet.locks import job_lock
from kitefleet.settings import KEYS, MODES, Settings
from kitefleet.users import read_env_file
from workers.context import JobContext
from workers.faults import fault_point

TAKES_JOB_LOCK = False  # taken in run(), after a listener's event is in the outbox
#: a notify already running delivers in a few seconds; wait this long for its lock
LOCK_WAIT_S = 60.0
#: back-off after a failed try (wall seconds): BACKOFF_S x 2^(tries-1), at most BACKOFF_MAX_S
BACKOFF_S = 30.0
BACKOFF_MAX_S = 900.0
STATUS_FILE = ob.STATUS

#: the listener's events: --event NAME -> (kind, text)
LISTENER_EVENTS = ("trader_stopped", "trader_restarted")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--event", choices=LISTENER_EVENTS, help="first add this event (supervisord listener)")
    parser.add_argument("--exit", type=int, default=None, dest="exit_code", help="the trader's exit code")
    parser.add_argument("--expected", action="store_true", help="supervisord counted the exit as expected")
    parser.add_argument("--fatal", action="store_true", help="supervisord gave up (FATAL)")
    parser.add_argument("--test", action="store_true", help="send a test message through each URL; print results")


# --- the exit-4 path ---------------------------------------------------------------------------
class NotifyOnlySettings(Settings):
    """The settings of an env file that does not load as a whole: only its NOTIFY_* keys are real
    (``fallback_settings``). A type of its own, not a ``NOTIFY_ONLY`` value among the settings: it
    is no env key a person could set, and the schema (kitefleet.settings.KEYS) lists only those."""


def fallback_settings(home: Home, user: str, error: ConfigError) -> Settings:
    """Only NOTIFY_URLS and NOTIFY_LEVEL of an env file that does not load as a whole: the file
    must still be 0600 and those two keys must parse. Else ConfigError, and "cannot notify" is
    recorded for status and doctor."""
    from dotenv import dotenv_values

    shown = f"env/{user}.env"
    try:
        st, raw = read_env_file(home.env_file(user), shown)
        if st.st_mode & 0o077:
            raise ConfigError(f"{shown}: not 0600")
        values = dotenv_values(stream=io.StringIO(raw.decode("utf-8-sig", errors="replace")), interpolate=False)
        picked: dict[str, object] = {}
        for name in ("NOTIFY_URLS", "NOTIFY_LEVEL"):
            text = values.get(name)
            picked[name] = KEYS[name].default if text is None else KEYS[name].parse(text.strip())
    except (ConfigError, ValueError) as exc:
        why = str(exc) if isinstance(exc, ConfigError) else "NOTIFY_URLS or NOTIFY_LEVEL does not parse"
        write_status(home, user, ok=False, why=f"cannot notify: {why}")
        raise ConfigError(f"{error}; cannot notify ({why})") from None
    mode = values.get("TRADER_MODE")
    settings_values: dict[str, object] = {key.name: key.default for key in KEYS.values()}
    settings_values.update(picked, TRADER_MODE=mode if mode in MODES else "live",
                           KITE_API_KEY=values.get("KITE_API_KEY") or "", KITE_API_SECRET=None)
    return NotifyOnlySettings(user=user, env_file=home.env_file(user), values=MappingProxyType(settings_values),
                    file_keys=frozenset(picked))


def write_status(home: Home, user: str, *, ok: bool, why: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
    try:
        atomic_write_json(home.user_data_dir(user) / STATUS_FILE,
                          {"can_notify": ok, "why": why, "time": clock.now().isoformat(timespec="seconds"),
                           **(extra or {})})
    except OSError:
        logging.getLogger("kitefleet.notify").warning("could not write %s", STATUS_FILE)


# --- Apprise -----------------------------------------------------------------------------------
def build_apprise(urls: tuple[str, ...], shown: str) -> Any:
    """One Apprise object with the user's URLs, in order; ConfigError naming the first entry it
    cannot read, by position (the entry itself may be a token)."""
    import apprise

    apprise_log = logging.getLogger("apprise")
    asset = apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
    ap = apprise.Apprise(asset=asset)
    for position, url in enumerate(urls, 1):
        # Apprise logs a URL it cannot use, shortened (the redactor would not know that form).
        apprise_log.setLevel(logging.CRITICAL)
        try:
            added = ap.add(url)
        finally:
            apprise_log.setLevel(logging.WARNING)  # its INFO lines name each service's host
        if not added:
            raise ConfigError(f"{shown}: NOTIFY_URLS entry {position} is not a URL Apprise can use "
                              "(not shown: it may hold a token); see https://github.com/caronc/apprise/wiki")
    return ap


def message(event: Mapping[str, Any]) -> tuple[str, str]:
    title = f"kitefleet {event.get('user')}: {str(event.get('kind', '')).replace('_', ' ')}"
    body = str(event.get("text", ""))
    if event.get("act"):
        body += f"\nTo act: {event['act']}"
    body += f"\n[{event['id']} {event.get('time', '')}]"
    return title, body


def _notify_type(event: Mapping[str, Any]) -> str:
    return "warning" if event.get("level") == "warning" else "info"


def backoff(tries: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_S * 2 ** max(0, tries - 1))


def deliver(home: Home, user: str, ap: Any, level: str, give_up_hours: float, log: logging.Logger,
            wall: float | None = None) -> dict[str, int]:
    """One pass over the outbox past the cursor. Returns counts: sent, skipped, dropped, failed."""
    now = time.time() if wall is None else wall
    counts = {"sent": 0, "skipped": 0, "dropped": 0, "failed": 0}
    cursor = ob.read_cursor(home, user)
    offset = int(cursor.get("offset") or 0)
    tries: dict[str, list[float]] = {k: list(v) for k, v in (cursor.get("tries") or {}).items()}
    done = ob.read_done(home, user)
    targets = list(range(1, len(ap) + 1)) if ap is not None else []
    down: set[int] = set()  # a URL that failed this run: its later events wait (their order is kept)
    prefix = True
    new_offset = offset
    next_try: float | None = None
    for event in ob.read_events(home, user, offset):
        eid = event["id"]
        have = done.get(eid, {})
        if ob.settled(have, targets):
            tries.pop(eid, None)
        else:
            if not targets or not ob.wanted(level, event):
                ob.mark(home, user, eid, "*", "skipped")
                counts["skipped"] += 1
            else:
                first, count = tries.get(eid, [now, 0])
                if now - first >= give_up_hours * 3600:
                    log.warning("notification %s (%s) dropped: no service took it within %g hours",
                                eid, event.get("kind"), give_up_hours)
                    ob.mark(home, user, eid, "*", "dropped")
                    counts["dropped"] += 1
                else:
                    failed = _send(home, user, ap, event, [t for t in targets if str(t) not in have], down, log)
                    counts["sent"] += len([t for t in targets if str(t) not in have]) - failed
                    if failed:
                        counts["failed"] += 1
                        tries[eid] = [first, count + 1]
                        due = now + backoff(int(count) + 1)
                        next_try = due if next_try is None else min(next_try, due)
                        prefix = False
                        continue
            tries.pop(eid, None)
        if prefix:
            new_offset = int(event["_end"])
    ob.write_cursor(home, user, new_offset, next_try, tries)
    return counts


def _send(home: Home, user: str, ap: Any, event: Mapping[str, Any], positions: list[int], down: set[int],
          log: logging.Logger) -> int:
    """Send ``event`` to each URL position; mark each one that accepts it. Returns how many failed."""
    title, body = message(event)
    attach = None
    if event.get("attach"):
        path = home.root / str(event["attach"])
        attach = str(path) if path.is_file() else None
    failed = 0
    for position in positions:
        if position in down:
            failed += 1
            continue
        server = ap[position - 1]
        fault_point("notify_before_send", event["id"])
        try:
            ok = bool(server.notify(body=body, title=title, notify_type=_notify_type(event),
                                    attach=attach if attach and server.attachment_support else None))
        except Exception:  # a plugin's bug is one failed delivery, not a crash
            log.exception("notification %s to URL %d (%s) raised", event["id"], position, server.service_name)
            ok = False
        if not ok:
            failed += 1
            down.add(position)
            log.warning("notification %s to URL %d (%s) failed; trying again later", event["id"], position,
                        server.service_name)
            continue
        fault_point("notify_after_send", event["id"])
        ob.mark(home, user, event["id"], position, "sent")
        log.info("notification %s (%s) sent to URL %d (%s)", event["id"], event.get("kind"), position,
                 server.service_name)
    return failed


# --- the listener's events -----------------------------------------------------------------------
def listener_event(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(kind, text, act) for a trader that stopped under supervisord."""
    code = args.exit_code
    if code == ExitCode.CONFIG:
        return ("trader_stopped", "trader stopped: configuration (exit 4); supervisord will not restart it",
                "fix the env file (orchestrator.py users shows the problem), then supervisorctl start trader:<User>")
    if args.event == "trader_restarted" and not args.fatal:
        return ("trader_restarted", f"trader restarted (exit {code})", "see logs/<User>/scheduler.out.log")
    detail = "" if code is None else f" (exit {code})"
    return ("trader_stopped", f"trader stopped{detail}", "see logs/<User>/scheduler.out.log; "
            "orchestrator.py status; supervisorctl start trader:<User>")


def run(ctx: JobContext) -> int:
    home, user, settings = ctx.home, ctx.user, ctx.settings
    shown = f"env/{user}.env"
    if ctx.args.event:
        kind, text, act = listener_event(ctx.args)
        ob.emit(home, user, kind, text, act=act and act.replace("<User>", user))
    urls: tuple[str, ...] = tuple(settings.get("NOTIFY_URLS") or ())  # type: ignore[arg-type]
    try:
        ap = build_apprise(urls, shown) if urls else None
    except ConfigError as exc:
        write_status(home, user, ok=False, why=f"cannot notify: {exc}")
        raise
    if ctx.args.test:
        return _test(ap, user)
    lock = job_lock(home, user, "notify")
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            lock.acquire()
            break
        except AlreadyRunning:  # another notify delivers; wait for it to finish
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        counts = deliver(home, user, ap, settings.text("NOTIFY_LEVEL"), settings.number("NOTIFY_GIVE_UP_HOURS"),
                         ctx.log)
        _compact(home, user, ctx.log)
    finally:
        lock.release()
    ctx.log.info("notify: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    write_status(home, user, ok=bool(urls), why=None if urls else "no NOTIFY_URLS",
                 extra={"last_counts": counts, "notify_only": isinstance(settings, NotifyOnlySettings)})
    return ExitCode.OK


def _compact(home: Home, user: str, log: logging.Logger) -> None:
    """After the delivery pass, under the job lock (no other pass runs): the outbox sheds settled
    events older than a month once its settled prefix is big enough (kitefleet.outbox.compact).
    Every step of it is safe to die after, so a failure here is a WARNING and the next run's try."""
    try:
        ob.compact(home, user, clock.now(), step=lambda name: fault_point("outbox_compact", name))
    except (OSError, TimeoutError) as exc:
        log.warning("outbox not compacted (%s: %s); the next notify run tries again", type(exc).__name__,
                    getattr(exc, "strerror", None) or exc)


def _test(ap: Any, user: str) -> int:
    results = []
    for position in range(1, (len(ap) if ap is not None else 0) + 1):
        server = ap[position - 1]
        try:
            ok = bool(server.notify(title=f"kitefleet {user}: test",
                                    body=f"Test message for {user} from kitefleet ({clock.now():%Y-%m-%d %H:%M} IST)."))
        except Exception:
            ok = False
        results.append({"position": position, "service": server.service_name, "ok": ok})
    print(json.dumps({"user": user, "results": results}))
    sys.stdout.flush()
    return ExitCode.OK  # the JSON says which worked (orchestrator.py notify-test sets its own exit)
