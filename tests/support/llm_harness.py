"""The LLM pipeline on temporary folders: copies of the shipped prompts and corpus, a fake clock;
a provider that refuses its key, and a question asked of the gateway's HTTP app."""

import datetime
import shutil
from pathlib import Path
from types import SimpleNamespace

from dagster import (
    AssetCheckKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    evaluate_automation_conditions,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    materialize,
)
from fastapi.testclient import TestClient
from httpx import Response

from platform_assets.definitions import ASSET_MODULES
from resources.alerting import LocalAlerter
from resources.clock import Clock
from resources.environments import PROJECT_ROOT
from resources.llm.embeddings import OpenAIEmbedder
from resources.llm.environments import CORPUS, PROMPTS, llm_resources
from resources.llm.gateway import Gateway, GatewaySettings, build_gateway
from resources.llm.prompts import PromptRegistry
from resources.llm.providers import LLMProviders, ProviderConfig
from resources.llm.rag import CorpusFolder
from serving.llm.loopback import LoopbackProvider

USE_CASE = "fraud_ops_assistant"
# The code location's LLM wiring modules, as definitions.py lists them.
LLM_MODULES = [m for m in ASSET_MODULES if m.__name__.startswith("platform_assets.llm.")]
START = datetime.datetime(2026, 11, 20, 9, 0, tzinfo=datetime.UTC)
KEY = "fw-test-key"  # the gateway API key the HTTP tests give their use case


class FakeTime:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.seconds = 1_000.0

    def __call__(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class LLMStack:
    """Resources of the LLM pipeline over copies of the shipped prompts and corpus."""

    def __init__(self, tmp_path: Path, providers: list[ProviderConfig] | None = None, **chain):
        self.tmp_path = tmp_path
        self.prompt_dir = tmp_path / "prompts"
        self.corpus_dir = tmp_path / "corpus"
        shutil.copytree(PROJECT_ROOT / PROMPTS, self.prompt_dir)
        shutil.copytree(PROJECT_ROOT / CORPUS, self.corpus_dir)
        self.data_dir = tmp_path / "data"
        self.resources = llm_resources("local", self.data_dir, PROJECT_ROOT)
        self.resources["corpus"] = CorpusFolder(root=str(self.corpus_dir))
        self.resources["prompts"] = PromptRegistry(
            source_dir=str(self.prompt_dir),
            store_url=f"sqlite:///{self.data_dir / 'llm/registry.db'}",
        )
        defaults = {"timeout_seconds": 2.0, "backoff_initial_seconds": 0.01}
        self.resources["llm_providers"] = LLMProviders(
            providers=providers or [], **{**defaults, **chain}
        )
        self.resources["alerter"] = LocalAlerter(alerts_file=str(self.data_dir / "alerts.jsonl"))
        self.resources["clock"] = Clock(frozen_at=START.isoformat())
        self.time = FakeTime()

    @property
    def ns(self) -> SimpleNamespace:
        return SimpleNamespace(**self.resources)

    def sync_index(self, at: datetime.datetime = START):
        r = self.resources
        return r["vector_index"].sync(r["corpus"].documents(), r["embedder"], at)

    def gateway(self, **settings) -> Gateway:
        settings = {"reload_seconds": 0.0, **settings}
        return build_gateway(self.ns, GatewaySettings(**settings), now=self.time)

    def materialize(
        self, instance: DagsterInstance, *keys: str | AssetCheckKey
    ) -> ExecuteInProcessResult:
        """Materialize LLM assets with their checks (or run checks alone, given check keys)."""
        assets = [k for k in keys if isinstance(k, str)]
        checks = [k for k in keys if isinstance(k, AssetCheckKey)]
        return materialize(
            [*load_assets_from_modules(LLM_MODULES), *load_asset_checks_from_modules(LLM_MODULES)],
            selection=AssetSelection.assets(*assets) | AssetSelection.checks(*checks),
            resources=self.resources,
            instance=instance,
            raise_on_error=False,
        )

    def automation(self, instance: DagsterInstance, cursor=None):
        """One tick of the LLM group's declarative automation (what automation_sensor does)."""
        defs = Definitions(assets=load_assets_from_modules(LLM_MODULES), resources=self.resources)
        return evaluate_automation_conditions(
            defs, instance, AssetSelection.groups("llm"), cursor=cursor
        )

    def edit_prompt(self, label: str, old: str, new: str) -> None:
        path = self.prompt_dir / USE_CASE / f"{label}.toml"
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new))

    def edit_document(self, name: str, text: str) -> Path:
        path = self.corpus_dir / name
        path.write_text(text)
        return path


def priced(name: str, base_url: str, *models: str) -> ProviderConfig:
    return ProviderConfig(name=name, base_url=base_url, api_key="test-key", models=list(models))


def remote_embeddings(tmp_path: Path, endpoint: LoopbackProvider) -> LLMStack:
    """An indexed stack whose embedder is an OpenAI-compatible endpoint the test can take away."""
    stack = LLMStack(tmp_path)
    stack.resources["embedder"] = OpenAIEmbedder(
        base_url=endpoint.base_url, api_key="sk-test", max_retries=0, timeout_seconds=2.0
    )
    stack.sync_index()
    return stack


def refusing_provider(status: int = 401) -> LoopbackProvider:
    """A provider refusing every request: its key is bad (401) or may not use the model (403)."""
    return LoopbackProvider("primary", rates={str(status): 1.0})


def ask(client: TestClient, question: str | list[dict[str, str]], key: str = KEY) -> Response:
    """POST /v1/chat/completions for USE_CASE with ``key``: a question (one user message) or the
    messages."""
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    return client.post(
        "/v1/chat/completions",
        json={"model": USE_CASE, "messages": messages},
        headers={"Authorization": f"Bearer {key}"},
    )
