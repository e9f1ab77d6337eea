"""Shared simulation model: pure functions, no I/O, no clock."""
