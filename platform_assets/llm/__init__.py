"""The LLM pipeline: prompt registry, RAG index, golden-set evaluation, release, costs."""
