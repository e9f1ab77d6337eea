"""``doctor_checks``: the per-user half of ``orchestrator.py doctor``, run in a process of that user.

Prints one JSON line ``{"user", "mode", "checks": [{"check", "status", "detail", "fix"}]}`` with
status ``ok``, ``warn``, ``fail`` or ``n/a`` (the subsystem is not available in this version or
could not be checked because an earlier check failed). Read-only: it never writes state, never
places or changes anything at the broker (a paper user may log in, as any paper worker does).

Checks: env (reaching this point means the env file loaded: valid, 0600), clock, session,
broker (profile() with the session), state (the StateStore file loads as every job loads it:
parses, validates against kitefleet.state_schema after migration, is this user's and mode's),
intents (none parked ``unresolved``), ownership (owned positions and, apart, the holdings the bot
does not manage, count and value; a bot stop on an unowned holding is a warning: "run adopt or
release"), gtt (every symbol the bot manages, min(owned, held) under MANAGE_SCOPE=own, every NSE
holding under all, covered by an active stop GTT for at least the held quantity, workers.gtt
.coverage_gaps; a holding on another exchange is reported "not on NSE, not managed", and a
person's GTT that sells more than is held is reported, both as warnings, never failures), drift (open
state positions agree with held_quantities), instance (instance lock and heartbeat agree),
loss_limit (who checks MAX_DAILY_LOSS_PERCENT: the watchdog, or each stop and entry run when the
watchdog is not scheduled; a warning while a loss-limit halt holds).

``--holdings-json`` prints ``{"holdings": [SYMBOL, ...]}`` (symbols held on any exchange) and
exits: what ``migrate-state --ask-broker`` asks each user.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from kitefleet import clock
from kitefleet.errors import KitefleetError, StateError, TokenError
from workers.context import JobContext
from workers.gtt import coverage_gaps, oversized_person_gtts, stop_ownership
from workers.portfolio import (
    OWN,
    SCOPE_ALL_WARNING,
    UNOWNED_BOT_STOP,
    AccountSnapshot,
    Scope,
    held_quantities,
    manage_scope,
    reconcile_ledger,
    snapshot,
    unmanaged_holdings,
    unowned_bot_stops,
)

LOG_TO_CONSOLE = False
OK, WARN, FAIL, NA = "ok", "warn", "fail", "n/a"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holdings-json", action="store_true",
                        help="print the symbols this user holds at the broker as JSON and exit")


def check(name: str, status: str, detail: str, fix: str = "") -> dict[str, str]:
    return {"check": name, "status": status, "detail": detail, "fix": fix}


# --- pure checks on plain data (unit-tested) -------------------------------------------------------


def _is_open(position: dict[str, Any]) -> bool:
    if position.get("exit_price") not in (None, "") or position.get("exit_time"):
        return False
    if str(position.get("status", "")).lower() in ("closed", "exited"):
        return False
    try:
        return int(position.get("quantity") or 0) > 0
    except (TypeError, ValueError):
        return False


def position_drift(state_positions: dict[str, Any], held: dict[str, int]) -> list[str]:
    """Differences between the open positions the state records and what the broker holds."""
    recorded = {str(t).upper(): int(p.get("quantity") or 0) for t, p in state_positions.items()
                if isinstance(p, dict) and _is_open(p)}
    drift = []
    for sym in sorted(set(recorded) | {s for s, q in held.items() if q > 0}):
        mine, theirs = recorded.get(sym, 0), max(held.get(sym, 0), 0)
        if mine != theirs:
            drift.append(f"{sym}: state {mine}, broker {theirs}")
    return drift


# --- checks that read files or call the broker -----------------------------------------------------


def _guard(name: str, fn: Callable[[], dict[str, str]]) -> dict[str, str]:
    """A check whose subsystem is missing says so instead of crashing the whole doctor."""
    try:
        return fn()
    except ImportError as exc:
        return check(name, NA, f"not available in this version ({exc.name})")
    except KitefleetError as exc:
        return check(name, FAIL, str(exc))
    except Exception as exc:  # a doctor must finish its table; the detail says what broke
        return check(name, FAIL, f"check crashed: {type(exc).__name__}: {exc}")


def check_clock() -> dict[str, str]:
    c = clock.get_clock()
    if c.simulated:
        return check("clock", OK, f"simulated ({c.describe()}); fine in paper mode")
    return check("clock", OK, "real clock")


def check_session(ctx: JobContext) -> dict[str, str]:
    from workers.session_file import read_session, session_file_problem, usable_session

    settings = ctx.settings
    data = read_session(ctx.home, ctx.user)
    now = clock.now()
    if usable_session(data, settings, now) is not None:
        assert data is not None
        return check("session", OK, f"valid until {data.get('expires_at')}")
    if settings.is_paper:
        return check("session", OK, "no current paper session; workers log in automatically")
    if settings.get("KITE_ACCESS_TOKEN"):
        return check("session", WARN, "no unexpired session file; falling back to KITE_ACCESS_TOKEN from the env "
                     "file (it dies at 06:00 IST each day)", f"orchestrator.py login {ctx.user}")
    problem = session_file_problem(ctx.home, ctx.user) if data is None else None
    if problem is not None:
        detail = f"data/{ctx.user}/session.json is unreadable ({problem})"
    elif data is None:
        detail = "no session file"
    else:
        detail = f"session expired at {data.get('expires_at')}"
    return check("session", FAIL, detail, f"orchestrator.py login {ctx.user}")


def check_state(ctx: JobContext) -> tuple[dict[str, str], dict[str, Any] | None]:
    from kitefleet.state import StateStore

    store = StateStore(ctx.home, ctx.user, ctx.settings.mode)
    if not store.path.exists():
        return check("state", OK, "no state file yet (created by the first job)"), {}
    try:
        # The same load (migration, then the whole schema) every job does: doctor never calls a
        # file valid that a job would refuse.
        state = store.read()
    except StateError as exc:
        return check("state", FAIL, str(exc),
                     f"repair the place the detail names in {store.path.name} by hand, or restore the backup "
                     f"as the detail says; every job of {ctx.user} refuses to run until then"), None
    n = sum(1 for p in (state.get("positions") or {}).values() if isinstance(p, dict) and _is_open(p))
    return check("state", OK, f"{store.path.name} valid; {n} open position(s)"), state


def check_intents(ctx: JobContext, state: dict[str, Any]) -> dict[str, str]:
    from workers.intents import OPEN_STATUSES, UNRESOLVED

    intents = state.get("intents") or {}
    parked = sorted(f"{i.get('symbol')} ({tag}: {i.get('note') or i.get('purpose')})"
                    for tag, i in intents.items() if isinstance(i, dict) and i.get("status") == UNRESOLVED)
    if parked:
        return check("intents", FAIL, "unresolved, new entries of the symbol blocked: " + "; ".join(parked),
                     "compare with the Kite order book, trades and holdings, then run "
                     f"'orchestrator.py resolve-intent {ctx.user} TAG --note WHAT_YOU_FOUND'")
    pending = [t for t, i in intents.items() if isinstance(i, dict) and i.get("status") in OPEN_STATUSES]
    if pending:
        return check("intents", WARN, f"{len(pending)} open intent(s); the next job reconciles them")
    return check("intents", OK, f"{len(intents)} intent(s), none unresolved")


def check_instance(ctx: JobContext) -> dict[str, str]:
    from kitefleet.heartbeat import is_stale, read_heartbeat
    from kitefleet.locks import lock_holder

    holder = lock_holder(ctx.home.locks_dir(ctx.user) / "instance.lock")
    beat = read_heartbeat(ctx.home, ctx.user)
    wall = time.time()  # heartbeat staleness is judged on wall time, as status does
    running_state = (beat or {}).get("state") not in (None, "stopped")
    if holder is None:
        if beat is not None and running_state and not is_stale(beat, wall):
            return check("instance", FAIL, f"heartbeat says {beat.get('state')} (pid {beat.get('pid')}) but "
                         "nobody holds the instance lock", "orchestrator.py status; restart: supervisorctl "
                         f"restart trader:{ctx.user}")
        return check("instance", OK, "worker not running (no instance lock held)")
    if beat is None:
        return check("instance", FAIL, f"instance lock held by pid {holder} but no heartbeat",
                     f"a stuck or foreign process? check pid {holder}; supervisorctl restart trader:{ctx.user}")
    if is_stale(beat, wall):
        return check("instance", FAIL, f"instance lock held by pid {holder} but the heartbeat is stale",
                     f"the scheduler is hung: supervisorctl restart trader:{ctx.user}")
    if beat.get("pid") not in (None, holder):
        return check("instance", FAIL, f"lock held by pid {holder}, heartbeat written by pid {beat.get('pid')}",
                     f"two schedulers? orchestrator.py stop {ctx.user}, then supervisorctl start trader:{ctx.user}")
    return check("instance", OK, f"running (pid {holder}, {beat.get('state')})")


def demat_consent_problem(profile: dict[str, Any], *, live: bool) -> str | None:
    """Why a live account cannot sell its holdings unattended, or None. Without DDPI/POA
    (``meta.demat_consent`` neither ``consent`` nor ``physical``) every sale of holdings, GTT
    stops included, is rejected unless the holdings were authorised with CDSL TPIN that day."""
    value = (profile.get("meta") or {}).get("demat_consent")
    if not live or value in ("consent", "physical"):
        return None
    return (f"demat consent is {value!r} (no DDPI/POA): Zerodha rejects every sale of holdings, the "
            "GTT stops' included, unless they were authorised with CDSL TPIN that day")


def inactive_bot_stops(held: dict[str, int], gtts: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, str]:
    """Symbol -> problem, for a held symbol whose recorded bot stop GTT is in any state but active
    (Kite disables a GTT on a split or bonus ex-date, or a trigger too near the LTP; cancels it on
    a delisting): it protects nothing, whatever other GTT covers the symbol."""
    status = {str(g.get("id")): str(g.get("status", "")).lower() for g in gtts}
    out: dict[str, str] = {}
    for sym, rec in sorted((state.get("stops") or {}).items()):
        gid = str((rec or {}).get("gtt_id"))
        if held.get(sym, 0) > 0 and status.get(gid, "active") != "active":
            out[sym] = f"{sym}: the bot's stop GTT {gid} is {status[gid]}, not active"
    return out


def broker_checks(ctx: JobContext, state: dict[str, Any] | None) -> list[dict[str, str]]:
    from workers.broker_errors import BrokerUnavailable
    from workers.kite_client import build_kite

    fix_unreachable = ("start the paper broker: orchestrator.py paper-broker" if ctx.settings.is_paper
                       else "check the network and https://kite.trade/status; try again")
    try:
        kite = build_kite(ctx.home, ctx.settings, ctx.log, attempts=2, backoff_initial=0.2, timeout=10)
        profile = kite.profile()
    except TokenError as exc:
        skipped = [check(n, NA, "skipped: no working session") for n in ("ownership", "gtt", "drift")]
        return [check("broker", FAIL, str(exc), f"orchestrator.py login {ctx.user}"), *skipped]
    except BrokerUnavailable as exc:
        skipped = [check(n, NA, "skipped: broker unreachable") for n in ("ownership", "gtt", "drift")]
        return [check("broker", FAIL, str(exc), fix_unreachable), *skipped]
    out = [check("broker", OK, f"reachable at {ctx.settings.kite_root}; broker user {profile.get('user_id')}")]
    consent = demat_consent_problem(profile, live=not ctx.settings.is_paper)
    if consent is not None:
        out.append(check("demat", FAIL, consent, "submit a DDPI in Zerodha Console (Account > Demat > DDPI); "
                         "docs/running-live.md, 'Demat consent'"))
    try:
        account = snapshot(kite)
        held = held_quantities(account)
        unmanaged = unmanaged_holdings(account)
        gtts = kite.get_gtts()
    except KitefleetError as exc:
        return [*out, check("gtt", FAIL, f"holdings or GTTs could not be read: {exc}", fix_unreachable),
                check("drift", NA, "skipped: holdings could not be read")]
    # Coverage is owed to what the bot manages (MANAGE_SCOPE, the ledger as of today's book; read-only).
    import copy

    view = copy.deepcopy(state or {})
    reconcile_ledger(view, account, gtts, clock.now().date())
    scope = manage_scope(view, held, str(ctx.settings.get("MANAGE_SCOPE", OWN)))
    out.append(ownership_check(view, scope, account))
    gaps = coverage_gaps(scope.protect, gtts)
    gaps.update(inactive_bot_stops(scope.protect, gtts, view))
    notes = [f"{s}: {q} held on another exchange: not on NSE, not managed (no bot stop; protect it yourself)"
             for s, q in sorted(unmanaged.items())]
    # A person's GTT is never changed by the bot: if it now sells more than is held, say so.
    oversized = oversized_person_gtts(gtts, held, stop_ownership(state or {}), adopt_on=held)
    notes += [line for _sym, lines in sorted(oversized.items()) for line in lines]
    if gaps:
        out.append(check("gtt", FAIL, "; ".join([*gaps.values(), *notes]),
                         f"orchestrator.py run {ctx.user} update_cnc_stoploss (places the missing stops)"))
    elif notes:
        out.append(check("gtt", WARN, f"{len(scope.protect)} managed holding(s), all covered; " + "; ".join(notes),
                         "look at these yourself: the bot never changes a person's GTT or a BSE holding"))
    else:
        out.append(check("gtt", OK, f"{len(scope.protect)} managed holding(s), all covered"))
    if state is None:
        out.append(check("drift", NA, "skipped: state file unusable"))
    else:
        drift = position_drift(state.get("positions") or {}, held)
        if drift:
            out.append(check("drift", FAIL, "; ".join(drift) + " (a manual trade or a partial fill?)",
                             "check the Kite trade book, then correct the state or let update_cnc_stoploss "
                             "resync it from the holdings"))
        else:
            out.append(check("drift", OK, "state positions match the broker's holdings"))
    return out


def ownership_check(state: dict[str, Any], scope: Scope, account: AccountSnapshot) -> dict[str, str]:
    """``ownership``: the positions the bot manages and, apart, the holdings it leaves alone (count
    and value); a bot stop on a holding the bot does not own (a stop given before the ledger) is a
    warning until a person adopts or releases it."""
    managed = f"{len(scope.protect)} owned position(s) worth {account.market_value(scope.protect):,.2f}"
    apart = (f"{len(scope.unmanaged)} holding(s) the bot does not manage worth "
             f"{account.market_value(scope.unmanaged):,.2f}")
    if scope.mode != OWN:
        return check("ownership", WARN, f"{SCOPE_ALL_WARNING}; {len(scope.protect)} holding(s) managed",
                     "set MANAGE_SCOPE=own in the env file (docs/running-live.md)")
    stray = unowned_bot_stops(state, scope)
    if stray:
        lines = [f"{s}: {UNOWNED_BOT_STOP} (GTT {state['stops'][s]['gtt_id']} left as it is)" for s in stray]
        return check("ownership", WARN, f"{managed}; {apart}; " + "; ".join(lines),
                     "orchestrator.py adopt USER SYMBOL (the bot manages it) or release USER SYMBOL "
                     "(the bot lets go and deletes its stop)")
    return check("ownership", OK, f"{managed}; {apart}")


def _holdings_json(ctx: JobContext) -> int:
    from workers.kite_client import build_kite

    kite = build_kite(ctx.home, ctx.settings, ctx.log, attempts=2, backoff_initial=0.2, timeout=10)
    account = snapshot(kite)
    symbols = set(held_quantities(account)) | set(unmanaged_holdings(account))
    print(json.dumps({"user": ctx.user, "holdings": sorted(symbols)}), flush=True)
    return 0


def check_loss_limit(ctx: JobContext) -> dict[str, str]:
    """Who enforces MAX_DAILY_LOSS_PERCENT (the watchdog, or the stop and entry runs when it is not
    scheduled), and whether it has halted the user."""
    from kitefleet import halt
    from workers.loss_limit import who_checks

    info = halt.halt_info(ctx.home, ctx.user)
    if info is not None and info.get("by") == halt.BY_LOSS_LIMIT:
        return check("loss_limit", WARN, f"{who_checks(ctx.settings)}; {halt.describe(info)}",
                     f"it ends by itself at the next session's open; orchestrator.py unhalt {ctx.user} lifts it now")
    return check("loss_limit", OK, who_checks(ctx.settings))


def run(ctx: JobContext) -> int:
    if ctx.args.holdings_json:
        return _holdings_json(ctx)
    checks = [check("env", OK, f"{ctx.settings.env_file.name} valid, mode 0600, {ctx.settings.mode} mode"),
              _guard("clock", check_clock), _guard("session", lambda: check_session(ctx))]
    state: dict[str, Any] | None = None

    def state_check() -> dict[str, str]:
        nonlocal state
        result, state = check_state(ctx)
        return result

    checks.append(_guard("state", state_check))
    if state is None:
        checks.append(check("intents", NA, "skipped: state file unusable"))
    else:
        checks.append(_guard("intents", lambda: check_intents(ctx, state or {})))
    try:
        checks.extend(broker_checks(ctx, state))
    except ImportError as exc:
        checks.append(check("broker", NA, f"not available in this version ({exc.name})"))
    except KitefleetError as exc:
        checks.append(check("broker", FAIL, str(exc)))
    checks.append(_guard("instance", lambda: check_instance(ctx)))
    checks.append(_guard("loss_limit", lambda: check_loss_limit(ctx)))
    from workers.logs import redact

    # A broker error can quote a URL with the API key in it: same redaction as the logs.
    for c in checks:
        c["detail"] = redact(c["detail"])
    print(json.dumps({"user": ctx.user, "mode": ctx.settings.mode, "checks": checks}), flush=True)
    return 0
