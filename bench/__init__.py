"""Benchmarks of issue 10 (``make bench``): one script per measurement, ``bench/run.py`` runs them all."""
