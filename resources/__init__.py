"""Configurable resources and IO: source systems, lake, alerting, clock, Feast, MLflow, LLM."""
