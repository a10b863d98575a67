"""Sensors and schedules that keep the loop turning without a click."""
