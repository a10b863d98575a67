"""Monitoring stage: the champion scored on every new day and judged against its training."""
