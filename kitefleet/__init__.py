"""Shared, non-secret helpers used by all three sides (orchestrator, workers, paper broker).

Paths and layout, user-name validation, the clock, the NSE calendar, exit codes, env-file
settings, the per-user state store and locks. Nothing here builds a Kite client.
"""
