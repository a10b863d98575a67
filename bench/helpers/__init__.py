"""Helpers of the benchmarks in ``bench/``: no measurements here, so ``make bench`` skips them.

The scripts run as ``python bench/<script>.py``, which puts ``bench/`` on ``sys.path``; they
import these modules as ``helpers.<module>``.
"""
