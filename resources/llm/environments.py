"""The LLM pipeline's resources for each environment (merged into ``build_resources``).

``local`` needs no key, no network and no service: hashing embeddings, the shipped
fraud-operations corpus, LanceDB, the prompt registry's store and the cost ledger as SQLite files
under the data folder (``llm/prompt_registry.db``, ``llm/ledger.sqlite``), and the embedded
extractive answerer as the only provider. ``prod`` reads everything that differs from the
environment:

- ``FLYWHEEL_LLM_BASE_URL``, ``OPENAI_API_KEY``: the OpenAI-compatible provider (tried first;
  serving gpt-4o-mini and gpt-4o; the embedded answerer stays as the last fallback);
- ``FLYWHEEL_EMBEDDINGS_URL``: the OpenAI-compatible embeddings endpoint (same key);
- ``FLYWHEEL_RAG_CORPUS_DIR``, ``FLYWHEEL_RAG_INDEX_URI``: the corpus folder and the index;
- ``FLYWHEEL_PROMPT_STORE_URL``, ``FLYWHEEL_LLM_LEDGER_URL``: the prompt registry's store and the
  cost ledger, SQLAlchemy URLs (``postgresql://user:pass@host/db``; both may be one database),
  shared by the code location and every gateway replica.

The gateway's callers need an API key per use case, in every environment:
``FLYWHEEL_LLM_KEY_<USE_CASE>`` (or its SHA-256, ``FLYWHEEL_LLM_KEY_SHA256_<USE_CASE>``); ``prod``
does not start without them, ``local`` takes ``flywheel-local-dev-key`` on loopback instead
(``resources/llm/keys.py``).
"""

from pathlib import Path
from typing import Any

from dagster import EnvVar

from resources.llm.embeddings import HashingEmbedder, OpenAIEmbedder
from resources.llm.ledger import LLMLedger
from resources.llm.prompts import PromptRegistry
from resources.llm.providers import LLMProviders, ProviderConfig
from resources.llm.rag import CorpusFolder, VectorIndex

PROMPTS = "serving/prompts"
CORPUS = "serving/corpus/fraud_ops"


def llm_resources(env: str, data_root: Path | None, project_root: Path) -> dict[str, Any]:
    """The LLM resources of ``env``; ``data_root`` is the local data folder (local only)."""
    prompts = str(project_root / PROMPTS)
    if env == "local":
        assert data_root is not None, "the local environment keeps LLM state in a data folder"
        return {
            "embedder": HashingEmbedder(),
            "corpus": CorpusFolder(root=str(project_root / CORPUS)),
            "vector_index": VectorIndex(uri=str(data_root / "llm/rag_index")),
            "prompts": PromptRegistry(
                source_dir=prompts, store_url=f"sqlite:///{data_root / 'llm/prompt_registry.db'}"
            ),
            "llm_providers": LLMProviders(),
            "llm_ledger": LLMLedger(url=f"sqlite:///{data_root / 'llm/ledger.sqlite'}"),
        }
    key = EnvVar("OPENAI_API_KEY")
    return {
        "embedder": OpenAIEmbedder(base_url=EnvVar("FLYWHEEL_EMBEDDINGS_URL"), api_key=key),
        "corpus": CorpusFolder(root=EnvVar("FLYWHEEL_RAG_CORPUS_DIR")),
        "vector_index": VectorIndex(uri=EnvVar("FLYWHEEL_RAG_INDEX_URI")),
        "prompts": PromptRegistry(
            source_dir=prompts, store_url=EnvVar("FLYWHEEL_PROMPT_STORE_URL")
        ),
        "llm_providers": LLMProviders(
            providers=[
                ProviderConfig(
                    name="primary",
                    base_url=EnvVar("FLYWHEEL_LLM_BASE_URL"),
                    api_key=key,
                    models=["gpt-4o-mini", "gpt-4o"],
                )
            ]
        ),
        "llm_ledger": LLMLedger(url=EnvVar("FLYWHEEL_LLM_LEDGER_URL")),
    }
