"""The LLM gateway: an OpenAI-compatible endpoint with prompts, RAG, semantic cache and costs."""
