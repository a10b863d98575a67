"""The LLM gateway: one OpenAI-compatible chat endpoint over prompts, RAG, cache and providers.

For each request it picks the prompt version (sticky A/B split by user between the released
production and candidate), embeds the question, consults the semantic cache in the scope of
(use case, prompt version, index version), retrieves passages from the RAG index, renders the
prompt and calls the provider chain, then writes the call to the cost ledger. The evaluation
asset calls ``Gateway.answer`` too, so what is evaluated is exactly what is served.

The served gateway (``build_gateway``) degrades instead of failing when the embedder is down:
the request skips the semantic cache, retrieves passages by keyword instead of by vector, and
says so (``GatewayAnswer.degraded == ["embeddings"]``; the HTTP app sends
``X-Flywheel-Degraded: embeddings``). A breaker skips the embedder for a cooldown after repeated
failures, so an outage costs no time per request; a gateway started during one calibrates its
cache once the embedder answers. The evaluation's gateway has no breaker: it fails instead of
scoring a degraded path.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from resources.environments import PROJECT_ROOT
from resources.llm.ab import assign
from resources.llm.budget import SpendGuard
from resources.llm.cache import SemanticCache, calibrate_threshold, load_pairs
from resources.llm.embeddings import Embedder
from resources.llm.ledger import CostLedger
from resources.llm.prompts import PromptRegistry, PromptVersion
from resources.llm.providers import ChatCall, CircuitBreaker, ProviderChain
from resources.llm.rag import IndexReader, VectorIndex

log = logging.getLogger(__name__)
# What a use case serves: production prompt, approved candidate (or None), candidate's share.
Served = tuple[PromptVersion, PromptVersion | None, float]
# What degrades when the embedder fails (the name in GatewayAnswer.degraded and the breaker).
EMBEDDINGS = "embeddings"
T = TypeVar("T")


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
    degraded: list[str] = field(default_factory=list)


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
        budget: SpendGuard | None = None,
        embedder_breaker: CircuitBreaker | None = None,
        calibrate: Callable[[], float] | None = None,
    ):
        """The request path over its parts.

        Args:
            registry: Prompt versions and releases.
            index: The RAG index.
            embedder: Embeds questions (cache and retrieval).
            chain: The provider chain.
            ledger: Where every call is priced and recorded.
            cache: The semantic cache.
            reload_seconds: How often releases and the index version are re-read.
            now: Monotonic seconds; tests pass a fake.
            budget: Hard daily limits checked before a provider is asked (a cache hit costs
                nothing and is not checked); None: no limit (the evaluation).
            embedder_breaker: With one, an embedder failure degrades the request (no cache,
                keyword retrieval) and repeated failures skip the embedder for a cooldown;
                without (the evaluation), an embedder failure raises.
            calibrate: The cache threshold, computed with the embedder; called on a request
                while ``cache.threshold`` is None (the embedder was down at start).
        """
        self.registry = registry
        self.index = index
        self.embedder = embedder
        self.chain = chain
        self.ledger = ledger
        self.cache = cache
        self.reload_seconds = reload_seconds
        self.now = now
        self.budget = budget
        self.embedder_breaker = embedder_breaker
        self.calibrate = calibrate
        self._calibrating = threading.Lock()
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

    def _embedding(self, work: Callable[[], T]) -> T | None:
        """Run an embedder call; with a breaker, a failure or an open breaker is None."""
        if self.embedder_breaker is None:
            return work()
        if not self.embedder_breaker.allows(EMBEDDINGS):
            return None
        try:
            value = work()
        except Exception as error:
            log.warning("the embedder failed, the request is degraded: %r", error)
            self.embedder_breaker.failed(EMBEDDINGS)
            return None
        self.embedder_breaker.succeeded(EMBEDDINGS)
        return value

    def _cache_ready(self) -> bool:
        """Whether the cache has its threshold, calibrating it now if it could not at start."""
        if self.cache.threshold is not None:
            return True
        if self.calibrate is None:
            return False
        with self._calibrating:
            if self.cache.threshold is None:
                self.cache.threshold = self._embedding(self.calibrate)
        return self.cache.threshold is not None

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
        vector = self._embedding(lambda: self.embedder.embed([question])[0])
        degraded = [] if vector is not None else [EMBEDDINGS]
        # The question's vector if the cache is used for this request, else None.
        keyed = vector if use_cache and vector is not None and self._cache_ready() else None
        scope = (use_case, prompt.version, reader.version)
        hit = self.cache.lookup(scope, question, keyed) if keyed is not None else None
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
        if self.budget is not None:
            self.budget.check(prompt.use_case)
        result = self._generate(question, prompt, reader, vector, request_id, variant, started)
        result.degraded = degraded
        self._record(result, user_id, endpoint, saved_usd=0.0)
        if self.budget is not None:
            self.budget.spent(result.use_case, result.cost_usd)
        if keyed is not None:
            payload = asdict(result)
            self.cache.store(scope, question, keyed, payload, result.cost_usd)
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
        """Retrieve passages, render the prompt and call the provider chain (a cache miss).

        Without a ``vector`` (the embedder is down) the passages come from keyword search.
        """
        k = int(prompt.parameter("retrieval_k", 3))
        passages = (
            reader.search(question, k, vector)
            if vector is not None
            else reader.keyword_search(question, k)
        )
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
    """Gateway knobs outside the Dagster resources, and the caps on what one request may carry.

    A body over ``max_body_bytes`` is refused with 413 before it is parsed; too many messages,
    a message too long or too many tokens in all of them with 422, naming the field and limit.
    """

    cache_ttl_seconds: float = Field(default=3600.0, description="How long a cached answer lives.")
    cache_threshold: float | None = Field(
        default=None, description="Similarity for a cache hit; None = calibrate on paraphrases."
    )
    reload_seconds: float = Field(default=1.0, description="How often releases are re-read.")
    embedder_failure_threshold: int = Field(
        default=3,
        gt=0,
        description="Embedder failures in a row after which requests skip it for a cooldown "
        "(they are answered degraded: no cache, keyword retrieval).",
    )
    embedder_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long a failing embedder is skipped."
    )
    budget_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often today's spend is re-read from the ledger for the hard budgets "
        "(other replicas' and the evaluation's calls count too).",
    )
    max_body_bytes: int = Field(
        default=65_536, gt=0, description="Largest request body in bytes (larger: 413)."
    )
    max_messages: int = Field(
        default=32, gt=0, description="Most messages in one chat request (more: 422)."
    )
    max_message_chars: int = Field(
        default=8_000, gt=0, description="Longest message content in characters (longer: 422)."
    )
    max_prompt_tokens: int = Field(
        default=4_000,
        gt=0,
        description="Most tokens over all messages, counted as OpenAI's tokenizers roughly do "
        "(4 characters a token; more: 422).",
    )


PARAPHRASE_SET = PROJECT_ROOT / "serving/evals/paraphrases.jsonl"


def build_gateway(
    resources: Any, settings: GatewaySettings, now: Callable[[], float] = time.monotonic
) -> Gateway:
    """A gateway from initialized Flywheel resources (the same ones the Dagster assets use).

    Args:
        resources: Has ``prompts``, ``vector_index``, ``embedder``, ``llm_providers``
            and ``llm_ledger`` (e.g. what ``dagster.build_resources`` yields), and ``alerter``
            if a provider refusing its key (401/403) is to be alerted, not only failed.
        settings: Cache and reload knobs.
        now: Monotonic seconds; tests pass a fake to move TTLs and cooldowns.
    """
    embedder = resources.embedder
    ledger = resources.llm_ledger.open()
    limits, refresh = resources.llm_ledger.hard_limits(), settings.budget_refresh_seconds
    threshold = settings.cache_threshold

    def calibrate() -> float:
        return calibrate_threshold(embedder, load_pairs(PARAPHRASE_SET)).threshold

    breaker = CircuitBreaker(
        settings.embedder_failure_threshold, settings.embedder_cooldown_seconds, now
    )
    if threshold is None:
        try:
            threshold = calibrate()
        except Exception as error:  # the embedder is down: start, and calibrate later
            log.warning("no cache threshold yet (the embedder failed: %r)", error)
            breaker.failed(EMBEDDINGS)
    return Gateway(
        registry=resources.prompts,
        index=resources.vector_index,
        embedder=embedder,
        chain=resources.llm_providers.build_chain(
            now=now, alerter=getattr(resources, "alerter", None)
        ),
        ledger=ledger,
        cache=SemanticCache(threshold, settings.cache_ttl_seconds, now=now),
        reload_seconds=settings.reload_seconds,
        now=now,
        budget=None if limits is None else SpendGuard(ledger, limits, refresh, now=now),
        embedder_breaker=breaker,
        calibrate=calibrate,
    )
