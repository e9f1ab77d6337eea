"""``make demo`` (``python -m demo``): two paper users' accelerated trading day, end to end.

The demo drives the real system from the outside, as a person at a terminal would: the paper
broker (``orchestrator.py paper-broker``), ``login``, ``run-all``, ``supervisor-conf``, supervisord
and its ``trader:<User>`` programs, all in a home of its own (``KITEFLEET_HOME``), moved through a
simulated trading day by one clock file. Modules:

    demo.home     the demo home: safety checks, wipe, env files, calendar, scenario, clock
    demo.procs    the processes the demo starts, and making sure none is left behind
    demo.replay   the clock plan of the replay, progress lines, waiting on the schedulers
    demo.report   the per-user report and the isolation audit
    demo.run_demo the command line and the sequence
"""
