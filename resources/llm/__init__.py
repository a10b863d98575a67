"""LLM infrastructure: embeddings, RAG, prompts, providers, ledger, the gateway request path."""
