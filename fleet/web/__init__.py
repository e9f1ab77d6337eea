"""The fleet dashboard (``orchestrator.py web``): one page for the fleet, one per user.

Fleet side: it reads files (fleet.web.disk), asks supervisord over its socket, and gets broker
figures only from each user's ``summary`` process (fleet.web.live). It never opens ``env/`` files
or ``session.json`` and holds no secret of any user. Security model: fleet.web.security.
"""
