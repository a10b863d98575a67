"""The LLM gateway over HTTP, and a fault-injecting provider on loopback for tests and benches."""
