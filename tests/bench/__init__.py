"""Smoke tests of the benchmark scripts: each runs on tiny inputs and prints a table (no timing)."""
