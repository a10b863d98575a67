"""The prod variant of the LLM pieces: endpoints and keys come from the environment only."""

import datetime

import pytest
from dagster import build_resources as initialize

from resources.environments import PROJECT_ROOT, build_resources
from resources.llm.environments import CORPUS
from resources.llm.gateway import GatewaySettings, build_gateway
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
USE_CASE = "fraud_ops_assistant"
KEYS = ("prompts", "corpus", "vector_index", "embedder", "llm_providers", "llm_ledger")


def test_prod_reads_provider_embeddings_and_storage_from_the_environment(tmp_path, monkeypatch):
    with LoopbackProvider("prod-model") as remote:
        monkeypatch.setenv("FLYWHEEL_LLM_BASE_URL", remote.base_url)
        monkeypatch.setenv("FLYWHEEL_EMBEDDINGS_URL", remote.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("FLYWHEEL_RAG_CORPUS_DIR", str(PROJECT_ROOT / CORPUS))
        monkeypatch.setenv("FLYWHEEL_RAG_INDEX_URI", str(tmp_path / "index"))
        monkeypatch.setenv("FLYWHEEL_PROMPT_STORE_URL", f"sqlite:///{tmp_path / 'prompts.db'}")
        monkeypatch.setenv("FLYWHEEL_LLM_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        definitions = build_resources("prod")
        with initialize({key: definitions[key] for key in KEYS}) as resources:
            now = datetime.datetime.now(datetime.UTC)
            resources.vector_index.sync(resources.corpus.documents(), resources.embedder, now)
            gateway = build_gateway(resources, GatewaySettings(cache_threshold=0.95))
            answer = gateway.answer(
                "Who must approve refunds over 500 euros?", "fraud_ops_assistant"
            )

    assert resources.embedder.model_id.startswith(
        f"openai:text-embedding-3-small@{remote.base_url}"
    )
    assert remote.counts["ok"] >= 3, "the corpus, the question and the answer went to the endpoint"
    assert (answer.provider, answer.model) == ("primary", "gpt-4o-mini")
    assert answer.text.startswith("[prod-model:gpt-4o-mini]")
    assert "refunds.md" in answer.sources
    assert gateway.ledger.calls()["cost_usd"][0] > 0
