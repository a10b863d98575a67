"""HTTP services: model prediction and the LLM gateway."""
