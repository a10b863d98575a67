"""Ingestion and baselines: the daily deliveries, their data contract, quarantine and drift gate."""
