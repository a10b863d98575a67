"""Flywheel's assets and checks, by lifecycle stage; definitions.py assembles them."""
