"""HTTP shells: the LLM gateway (the model prediction service comes next)."""
