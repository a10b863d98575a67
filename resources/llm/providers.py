"""LLM providers and the fallback chain the gateway and the evaluation call.

Every remote provider is an OpenAI-compatible API reached through the official ``openai`` SDK
(its own retries off: the chain owns retrying so it can count failures per provider). The chain:

1. orders the deployments: those serving the requested model first, then the others, and the
   embedded extractive answerer always last, so a request is answered even with every remote
   provider down;
2. retries a provider on 429, 5xx, timeouts and connection errors with exponential backoff and
   jitter (tenacity);
3. keeps a circuit breaker per provider: after ``failure_threshold`` failed requests in a row
   the provider is skipped for ``cooldown_seconds`` (or the server's ``Retry-After``, whichever
   is longer); then one trial request decides whether it closes again;
4. stops at a provider that refuses its credentials (401 or 403): a bad key is a configuration
   error, not an outage, so it is neither retried nor hidden behind another provider's answer.
   The request fails with ``ProviderAuthFailed`` and an alert goes out (at most one per provider
   per ``auth_alert_interval_seconds``).
"""

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dagster import Config, ConfigurableResource
from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from resources.alerting import Alerter
from resources.llm.text import approximate_tokens, content_terms, sentences

EMBEDDED_MODEL = "flywheel-extractive"
_SOURCE = re.compile(r"^\[(?P<doc>[^\]]+)\]\n(?P<text>.*?)(?=^\[[^\]]+\]\n|\Z)", re.M | re.S)
NOT_FOUND_ANSWER = "The fraud-operations policies in the index do not answer this question."
# Statuses that say the credentials are wrong (401) or may not do this (403): never a fallback.
AUTH_STATUSES = ("401", "403")


@dataclass(frozen=True)
class ChatCall:
    """What the chain is asked: the rendered messages, the model and its parameters."""

    messages: list[dict[str, str]]
    model: str
    temperature: float = 0.0
    max_tokens: int = 300
    max_sentences: int = 2


@dataclass(frozen=True)
class Reply:
    """A provider's answer with the token counts it reports."""

    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Attempt:
    """One try at one provider, for the response's trace and the tests."""

    provider: str
    model: str
    outcome: str
    seconds: float


@dataclass
class Completion:
    """The chain's answer: who answered with which model, and every attempt before it."""

    reply: Reply
    provider: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)


class AllProvidersFailed(RuntimeError):
    """Even the last provider failed; the attempts say how each one did."""

    def __init__(self, attempts: list[Attempt], message: str | None = None):
        super().__init__(
            message or "every provider failed: " + ", ".join(a.outcome for a in attempts)
        )
        self.attempts = attempts


class ProviderAuthFailed(AllProvidersFailed):
    """A provider refused its credentials (401) or the request (403); the chain stopped there.

    A subclass of ``AllProvidersFailed`` so that every caller that handles an unanswerable
    request (the HTTP app answers 503) handles this one too, with this message.
    """

    def __init__(self, provider: str, model: str, status: str, attempts: list[Attempt]):
        reason = (
            "unauthorized: check its api_key"
            if status == "401"
            else "forbidden: its key may not use this model"
        )
        super().__init__(
            attempts,
            f"provider {provider!r} refused the request for {model} with {status} ({reason}); "
            "no other provider was asked, so that no other model answers in its place",
        )
        self.provider = provider
        self.model = model
        self.status = status


class Provider(Protocol):
    """Something that answers a chat call with one of its models."""

    name: str
    models: tuple[str, ...]

    def complete(self, call: ChatCall, model: str) -> Reply:
        """Answer ``call`` with ``model``; raise on failure."""
        ...


class ExtractiveProvider:
    """The embedded default: answers with the context sentences that best match the question.

    Deterministic and offline. It reads the passages from the system message (the gateway puts
    each under a ``[doc_id]`` line) and the question from the last user message, and returns the
    ``max_sentences`` sentences sharing the most terms with the question, citing their documents.
    """

    name = "embedded"
    models: tuple[str, ...] = (EMBEDDED_MODEL,)

    def complete(self, call: ChatCall, model: str) -> Reply:
        """Pick sentences; no network, so it never fails on a well-formed call."""
        question = next(m["content"] for m in reversed(call.messages) if m["role"] == "user")
        system = "\n".join(m["content"] for m in call.messages if m["role"] == "system")
        asked = set(content_terms(question))
        scored = []
        for rank, match in enumerate(_SOURCE.finditer(system)):
            for position, sentence in enumerate(sentences(match["text"])[1:]):  # skip the title
                overlap = len(asked & set(content_terms(sentence)))
                if overlap:
                    scored.append((-overlap, rank, position, sentence, match["doc"]))
        best = sorted(scored)[: max(1, call.max_sentences)]
        if not best:
            text = NOT_FOUND_ANSWER
        else:
            ordered = sorted(best, key=lambda s: (s[1], s[2]))
            cited = sorted({s[4] for s in ordered})
            text = " ".join(s[3] for s in ordered) + f" (Sources: {', '.join(cited)})"
        prompt_text = "".join(m["content"] for m in call.messages)
        return Reply(text, approximate_tokens(prompt_text), approximate_tokens(text))


class OpenAICompatibleProvider:
    """A remote OpenAI-compatible API through the official SDK, with the SDK's retries off."""

    def __init__(
        self, name: str, base_url: str, api_key: str, models: Sequence[str], timeout: float
    ):
        import openai  # imported on use: keeps `dagster dev` reloads fast

        self.name = name
        self.models = tuple(models)
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout
        )

    def complete(self, call: ChatCall, model: str) -> Reply:
        """One chat completion request."""
        response = self.client.chat.completions.create(
            model=model,
            messages=call.messages,  # type: ignore[arg-type]  (plain role/content dicts)
            temperature=call.temperature,
            max_tokens=call.max_tokens,
        )
        usage = response.usage
        text = response.choices[0].message.content or ""
        return Reply(
            text,
            usage.prompt_tokens if usage else approximate_tokens(str(call.messages)),
            usage.completion_tokens if usage else approximate_tokens(text),
        )


def classify(error: BaseException) -> tuple[str, bool, float | None]:
    """Name a provider error, say whether a retry may help, and read any ``Retry-After``."""
    import openai

    if isinstance(error, openai.RateLimitError):
        after = error.response.headers.get("retry-after")
        return "429", True, float(after) if after and after.replace(".", "").isdigit() else None
    if isinstance(error, openai.InternalServerError):
        return f"{error.status_code}", True, None
    if isinstance(error, openai.APITimeoutError):
        return "timeout", True, None
    if isinstance(error, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(error, openai.APIStatusError):
        return f"{error.status_code}", False, None
    return type(error).__name__, False, None


class CircuitBreaker:
    """Per-provider breaker: closed, open for a cooldown after repeated failures, then a trial."""

    def __init__(self, failure_threshold: int, cooldown_seconds: float, now: Callable[[], float]):
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.now = now
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def allows(self, provider: str) -> bool:
        """Whether a request may go to ``provider`` now.

        Closed: yes. Open: no, until the cooldown has passed; then exactly one caller gets a yes
        (the trial) and the breaker stays open for everyone else until that trial reports.
        """
        with self._lock:
            until = self._open_until.get(provider)
            if until is None:
                return True
            if self.now() < until:
                return False
            self._open_until[provider] = self.now() + self.cooldown_seconds  # trial in flight
            return True

    def succeeded(self, provider: str) -> None:
        """A request went through: close the breaker."""
        with self._lock:
            self._failures[provider] = 0
            self._open_until.pop(provider, None)

    def failed(self, provider: str, retry_after: float | None = None) -> None:
        """A request failed after its retries: count it, and open on the threshold.

        A provider that was open and failed its trial opens again at once.
        """
        with self._lock:
            was_open = provider in self._open_until
            self._failures[provider] = self._failures.get(provider, 0) + 1
            if was_open or self._failures[provider] >= self.failure_threshold:
                cooldown = max(self.cooldown_seconds, retry_after or 0.0)
                self._open_until[provider] = self.now() + cooldown


class ProviderChain:
    """Try the providers in order with retries and breakers; the last one always answers."""

    def __init__(
        self,
        providers: Sequence[Provider],
        breaker: CircuitBreaker,
        attempts_per_provider: int = 3,
        backoff_initial: float = 0.2,
        backoff_max: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        on_refused: Callable[[ProviderAuthFailed], None] | None = None,
        alert_interval: float = 600.0,
    ):
        """A chain over ``providers``, the last one being the last resort.

        Args:
            providers: Tried in order (see ``order``); the last one is never cooled down.
            breaker: Shared by every request through this chain.
            attempts_per_provider: Tries per provider on retryable errors.
            backoff_initial: First backoff in seconds.
            backoff_max: Longest backoff in seconds.
            sleep: How to wait between retries (tests pass a fake).
            on_refused: Called with the error when a provider refuses its credentials (the
                alert), at most once per provider per ``alert_interval`` seconds.
            alert_interval: Seconds (on the breaker's clock) between two ``on_refused`` calls for
                the same provider.
        """
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.providers = list(providers)
        self.breaker = breaker
        self.attempts_per_provider = attempts_per_provider
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.on_refused = on_refused
        self.alert_interval = alert_interval
        self._refusal_alerted: dict[str, float] = {}
        self._alert_lock = threading.Lock()

    def order(self, model: str) -> list[tuple[Provider, str]]:
        """(provider, model) in the order they are tried for ``model``."""
        serving = [(p, model) for p in self.providers if model in p.models]
        others = [(p, p.models[0]) for p in self.providers if model not in p.models]
        return serving + others

    @staticmethod
    def _try(
        provider: Provider,
        model: str,
        call: ChatCall,
        attempts: list[Attempt],
        retry_after: list[float | None],
    ) -> Reply:
        """One try at one provider, recorded in ``attempts`` whatever its outcome."""
        started = time.perf_counter()
        try:
            reply = provider.complete(call, model)
        except Exception as error:
            outcome, _, retry_after[0] = classify(error)
            attempts.append(Attempt(provider.name, model, outcome, time.perf_counter() - started))
            raise
        attempts.append(Attempt(provider.name, model, "ok", time.perf_counter() - started))
        return reply

    def complete(self, call: ChatCall) -> Completion:
        """Answer ``call``; AllProvidersFailed only if every provider, the last too, failed."""
        attempts: list[Attempt] = []
        last_resort = self.providers[-1]
        for provider, model in self.order(call.model):
            # The last resort is never cooled down: that is what makes a request never lost.
            if provider is not last_resort and not self.breaker.allows(provider.name):
                attempts.append(Attempt(provider.name, model, "cooldown", 0.0))
                continue
            retry_after: list[float | None] = [None]  # the last failure's Retry-After
            retrying = Retrying(
                stop=stop_after_attempt(self.attempts_per_provider),
                wait=wait_exponential_jitter(
                    initial=self.backoff_initial, max=self.backoff_max, jitter=self.backoff_initial
                ),
                retry=retry_if_exception(lambda error: classify(error)[1]),
                sleep=self.sleep,
                reraise=True,
            )
            try:
                reply = retrying(self._try, provider, model, call, attempts, retry_after)
            except Exception as error:
                if attempts[-1].outcome in AUTH_STATUSES:
                    raise self._refused(provider.name, model, attempts) from error
                if provider is not last_resort:
                    self.breaker.failed(provider.name, retry_after[0])
                continue
            self.breaker.succeeded(provider.name)
            return Completion(reply, provider.name, model, attempts)
        raise AllProvidersFailed(attempts)

    def _refused(self, provider: str, model: str, attempts: list[Attempt]) -> ProviderAuthFailed:
        """The error for a refused provider, alerted unless it was within the interval."""
        error = ProviderAuthFailed(provider, model, attempts[-1].outcome, attempts)
        with self._alert_lock:
            last = self._refusal_alerted.get(provider)
            due = last is None or self.breaker.now() - last >= self.alert_interval
            if due:
                self._refusal_alerted[provider] = self.breaker.now()
        if due and self.on_refused is not None:
            try:
                self.on_refused(error)
            except Exception as alert_error:  # the refusal is the error to raise, not this one
                error.add_note(f"the alert about it could not be sent: {alert_error!r}")
        return error


class ProviderConfig(Config):
    """One OpenAI-compatible provider deployment."""

    name: str = Field(description="Name in the ledger and the breaker, e.g. 'openai'.")
    base_url: str = Field(description="API root (…/v1).")
    api_key: str = Field(description="API key (a secret: use EnvVar).")
    models: list[str] = Field(description="Models this provider serves; the first is its default.")


class LLMProviders(ConfigurableResource):
    """The provider chain's configuration: remote providers in order, retries and breakers.

    The embedded extractive answerer is always appended last, so ``providers`` may be empty
    (the offline default) and a request is never lost when every remote provider fails.

    Attributes:
        providers: Remote OpenAI-compatible providers, tried in this order.
        timeout_seconds: Per request to a remote provider.
        attempts_per_provider: Tries per provider (1 = no retry) on 429, 5xx and timeouts.
        backoff_initial_seconds: First backoff; it doubles per retry, with jitter.
        backoff_max_seconds: Longest backoff.
        failure_threshold: Failed requests in a row that open a provider's breaker.
        cooldown_seconds: How long an open breaker skips the provider.
        auth_alert_interval_seconds: A provider refusing its key (401/403) fails every request
            that reaches it; this is the shortest time between two alerts about it.
    """

    providers: list[ProviderConfig] = Field(default_factory=list)
    timeout_seconds: float = 10.0
    attempts_per_provider: int = 3
    backoff_initial_seconds: float = 0.2
    backoff_max_seconds: float = 2.0
    failure_threshold: int = 3
    cooldown_seconds: float = 30.0
    auth_alert_interval_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Shortest time between two alerts about a provider refusing its key (401/403); "
            "every request to it fails meanwhile, so one alert per request would flood."
        ),
    )

    def build_chain(
        self,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        alerter: Alerter | None = None,
    ) -> ProviderChain:
        """A chain with fresh breakers; ``now`` and ``sleep`` let tests move time.

        Args:
            now: Monotonic seconds for breakers and alert intervals.
            sleep: How to wait between retries.
            alerter: Where a provider refusing its credentials is reported (None: the request
                still fails with ``ProviderAuthFailed``, but nobody is told).
        """
        remote: list[Any] = [
            OpenAICompatibleProvider(p.name, p.base_url, p.api_key, p.models, self.timeout_seconds)
            for p in self.providers
        ]
        return ProviderChain(
            [*remote, ExtractiveProvider()],
            CircuitBreaker(self.failure_threshold, self.cooldown_seconds, now),
            attempts_per_provider=self.attempts_per_provider,
            backoff_initial=self.backoff_initial_seconds,
            backoff_max=self.backoff_max_seconds,
            sleep=sleep,
            on_refused=None if alerter is None else _alert_refusal(alerter),
            alert_interval=self.auth_alert_interval_seconds,
        )


def _alert_refusal(alerter: Alerter) -> Callable[[ProviderAuthFailed], None]:
    """The chain's ``on_refused``: an error alert naming the provider, the model and the status."""

    def send(error: ProviderAuthFailed) -> None:
        alerter.send(
            title=f"LLM provider {error.provider} refused its credentials ({error.status})",
            message=(
                f"{error}. Every request that reaches {error.provider} fails until its key "
                "(LLMProviders.providers[].api_key) is fixed; nothing falls back meanwhile."
            ),
            severity="error",
            provider=error.provider,
            model=error.model,
            status=int(error.status),
        )

    return send
