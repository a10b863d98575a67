"""Configurable resources and IO: source systems, lake storage, alerting, clock."""
