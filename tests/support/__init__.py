"""Helpers the tests share: a local platform, the LLM stack, servers on loopback."""
