"""A worker job for the fault-injection tests: reaches the ``after_intent`` fault point, then says so."""

from __future__ import annotations

from workers.context import JobContext
from workers.faults import fault_point

RUNNER = (
    "import sys, workers.__main__ as m; "
    "m.JOBS['fault_job'] = 'tests.support.fault_job'; "
    "sys.exit(m.main(sys.argv[1:]))"
)


def run(ctx: JobContext) -> int:
    fault_point("after_intent", "INFY")
    print("survived the fault point", flush=True)
    return 0
