"""The worker's job names: the contract between ``python -m workers JOB`` and everything that names
a job (the orchestrator's ``run``/``run-all``, supervisord's config, the scheduler's settings keys).

Only names live here, no modules: the orchestrator checks a job name without importing anything of
the workers, and ``workers.__main__`` maps each name to the module that runs it.
"""

from __future__ import annotations

#: Every job ``python -m workers`` runs, in the order they are listed to people.
JOB_NAMES: tuple[str, ...] = (
    "whoami",
    "pattern_daily",
    "place_orders_daily",
    "update_cnc_stoploss",
    "hourly_candle_watchdog",
    "summary",
    "daemon",
    "login",
    "doctor_checks",
    "resolve_intent",
    "notify",
    "daily_report",
    "login_reminder",
    "cancel_entries",
    "adopt",
    "release",
    "flatten",
    "backtest",
)

#: The jobs the per-user scheduler runs, each with its ``SCHEDULE_<JOB>`` settings key.
SCHEDULED_JOBS: tuple[str, ...] = (
    "update_cnc_stoploss",
    "hourly_candle_watchdog",
    "place_orders_daily",
    "pattern_daily",
    "login_reminder",
    "daily_report",
)


def schedule_key(job: str) -> str:
    return f"SCHEDULE_{job.upper()}"
