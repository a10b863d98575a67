"""The LLM gateway: one OpenAI-compatible chat endpoint over prompts, RAG, cache and providers.

For each request it picks the prompt version (sticky A/B split by user between the released
production and candidate), embeds the question, consults the semantic cache in the scope of
(use case, prompt version, index version), retrieves passages from the RAG index, renders the
prompt and calls the provider chain, then writes the call to the cost ledger. The evaluation
asset calls ``Gateway.answer`` too, so what is evaluated is exactly what is served.
"""

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, Field

from resources.environments import PROJECT_ROOT
from resources.llm.ab import assign
from resources.llm.cache import SemanticCache, calibrate_threshold, load_pairs
from resources.llm.embeddings import Embedder
from resources.llm.ledger import CostLedger
from resources.llm.prompts import PromptRegistry, PromptVersion
from resources.llm.providers import ChatCall, ProviderChain
from resources.llm.rag import IndexReader, VectorIndex

# What a use case serves: production prompt, approved candidate (or None), candidate's share.
Served = tuple[PromptVersion, PromptVersion | None, float]


@dataclass
class GatewayAnswer:
    """What the gateway answered and everything the ledger and the caller need to know."""

    request_id: str
    use_case: str
    text: str
    variant: str
    prompt_version: str
    index_version: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cache_hit: bool
    sources: list[str]
    attempts: list[dict[str, Any]]
    latency_ms: float


class Gateway:
    """The request path, independent of HTTP (the FastAPI app and the evaluation share it)."""

    def __init__(
        self,
        registry: PromptRegistry,
        index: VectorIndex,
        embedder: Embedder,
        chain: ProviderChain,
        ledger: CostLedger,
        cache: SemanticCache,
        reload_seconds: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ):
        self.registry = registry
        self.index = index
        self.embedder = embedder
        self.chain = chain
        self.ledger = ledger
        self.cache = cache
        self.reload_seconds = reload_seconds
        self.now = now
        self._reader: IndexReader | None = None
        self._served: dict[str, tuple[float, Served]] = {}
        self._checked_index = float("-inf")
        self._lock = threading.Lock()

    def _current_reader(self) -> IndexReader:
        """The index reader, reopened when a refresh changed the index version."""
        with self._lock:
            if self._reader is None or self.now() - self._checked_index >= self.reload_seconds:
                if self._reader is None or self.index.version() != self._reader.version:
                    self._reader = self.index.open(self.embedder)
                self._checked_index = self.now()
            return self._reader

    def served(self, use_case: str) -> Served:
        """The released prompts of ``use_case``, re-read at most every ``reload_seconds``."""
        with self._lock:
            cached = self._served.get(use_case)
            if cached is None or self.now() - cached[0] >= self.reload_seconds:
                cached = (self.now(), self.registry.served(use_case))
                self._served[use_case] = cached
            return cached[1]

    def answer(
        self,
        question: str,
        use_case: str,
        user_id: str = "anonymous",
        endpoint: str = "chat",
        prompt: PromptVersion | None = None,
        use_cache: bool = True,
    ) -> GatewayAnswer:
        """Answer one question; ``prompt`` forces a version (the evaluation does this)."""
        started = time.perf_counter()
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if prompt is None:
            production, candidate, share = self.served(use_case)
            variant = assign(use_case, user_id, share) if candidate else "production"
            prompt = candidate if variant == "candidate" and candidate else production
        else:
            variant = prompt.label
        reader = self._current_reader()
        vector = self.embedder.embed([question])[0]
        scope = (use_case, prompt.version, reader.version)
        hit = self.cache.lookup(scope, question, vector) if use_cache else None
        if hit is not None:
            entry, _ = hit
            result = GatewayAnswer(
                **{
                    **entry.payload,
                    "request_id": request_id,
                    "variant": variant,
                    "cost_usd": 0.0,
                    "cache_hit": True,
                    "attempts": [],
                    "latency_ms": (time.perf_counter() - started) * 1000,
                }
            )
            self._record(result, user_id, endpoint, saved_usd=entry.cost_usd)
            return result
        result = self._generate(question, prompt, reader, vector, request_id, variant, started)
        self._record(result, user_id, endpoint, saved_usd=0.0)
        if use_cache:
            payload = asdict(result)
            self.cache.store(scope, question, vector, payload, result.cost_usd)
        return result

    def _generate(
        self,
        question: str,
        prompt: PromptVersion,
        reader: IndexReader,
        vector: Any,
        request_id: str,
        variant: str,
        started: float,
    ) -> GatewayAnswer:
        """Retrieve passages, render the prompt and call the provider chain (a cache miss)."""
        passages = reader.search(question, int(prompt.parameter("retrieval_k", 3)), vector)
        context = "\n\n".join(f"[{p.doc_id}]\n{p.text}" for p in passages)
        call = ChatCall(
            messages=prompt.messages(question, context),
            model=prompt.model,
            temperature=float(prompt.parameter("temperature", 0.0)),
            max_tokens=int(prompt.parameter("max_tokens", 300)),
            max_sentences=int(prompt.parameter("max_sentences", 2)),
        )
        completion = self.chain.complete(call)
        reply = completion.reply
        return GatewayAnswer(
            request_id=request_id,
            use_case=prompt.use_case,
            text=reply.text,
            variant=variant,
            prompt_version=prompt.version,
            index_version=reader.version,
            provider=completion.provider,
            model=completion.model,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            cost_usd=self.ledger.cost(
                completion.model, reply.prompt_tokens, reply.completion_tokens
            ),
            cache_hit=False,
            sources=list(dict.fromkeys(p.doc_id for p in passages)),
            attempts=[asdict(a) for a in completion.attempts],
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _record(self, result: GatewayAnswer, user_id: str, endpoint: str, saved_usd: float) -> None:
        self.ledger.record_call(
            request_id=result.request_id,
            use_case=result.use_case,
            endpoint=endpoint,
            provider="cache" if result.cache_hit else result.provider,
            model=result.model,
            prompt_version=result.prompt_version,
            variant=result.variant,
            user_id=user_id,
            prompt_tokens=0 if result.cache_hit else result.prompt_tokens,
            completion_tokens=0 if result.cache_hit else result.completion_tokens,
            cost_usd=result.cost_usd,
            cache_hit=int(result.cache_hit),
            saved_usd=saved_usd,
            latency_ms=result.latency_ms,
            fallbacks=sum(1 for a in result.attempts if a["outcome"] != "ok"),
        )


class GatewaySettings(BaseModel):
    """Gateway knobs outside the Dagster resources."""

    cache_ttl_seconds: float = Field(default=3600.0, description="How long a cached answer lives.")
    cache_threshold: float | None = Field(
        default=None, description="Similarity for a cache hit; None = calibrate on paraphrases."
    )
    reload_seconds: float = Field(default=1.0, description="How often releases are re-read.")


PARAPHRASE_SET = PROJECT_ROOT / "serving/evals/paraphrases.jsonl"


def build_gateway(
    resources: Any, settings: GatewaySettings, now: Callable[[], float] = time.monotonic
) -> Gateway:
    """A gateway from initialized Flywheel resources (the same ones the Dagster assets use).

    Args:
        resources: Has ``prompts``, ``vector_index``, ``embedder``, ``llm_providers``
            and ``llm_ledger`` (e.g. what ``dagster.build_resources`` yields).
        settings: Cache and reload knobs.
        now: Monotonic seconds; tests pass a fake to move TTLs and cooldowns.
    """
    embedder = resources.embedder
    threshold = settings.cache_threshold
    if threshold is None:
        threshold = calibrate_threshold(embedder, load_pairs(PARAPHRASE_SET)).threshold
    return Gateway(
        registry=resources.prompts,
        index=resources.vector_index,
        embedder=embedder,
        chain=resources.llm_providers.build_chain(now=now),
        ledger=resources.llm_ledger.open(),
        cache=SemanticCache(threshold, settings.cache_ttl_seconds, now=now),
        reload_seconds=settings.reload_seconds,
        now=now,
    )
