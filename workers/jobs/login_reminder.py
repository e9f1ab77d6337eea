"""``login_reminder`` (``SCHEDULE_LOGIN_REMINDER``, 08:15 on trading days, before the 09:00 stop run):
when the user has no valid Kite session, emit a ``login_needed`` event (kitefleet.outbox) naming the
command to run. Paper users log in by themselves: nothing to remind. Reads only
``data/<User>/session.json`` (workers.session_file); never contacts the broker.
"""

from __future__ import annotations

from kitefleet import clock
from kitefleet import outbox as ob
from workers.context import JobContext
from workers.session_file import read_session, unreadable_session, usable_session

LOG_TO_CONSOLE = False


def run(ctx: JobContext) -> int:
    if ctx.settings.is_paper:
        ctx.log.info("paper mode: jobs log in by themselves; no reminder")
        return 0
    now = clock.now()
    if usable_session(read_session(ctx.home, ctx.user), ctx.settings, now) is not None:
        ctx.log.info("the Kite session is valid: no reminder")
        return 0
    why = unreadable_session(ctx.home, ctx.user) or "no valid Kite session for today"
    ob.emit(ctx.home, ctx.user, "login_needed", f"{why}: log in before the 09:00 stop run",
            act=f"orchestrator.py login {ctx.user}", key=f"reminder|{now.date()}")
    ctx.log.warning("%s: login reminder sent to the outbox", why)
    return 0
