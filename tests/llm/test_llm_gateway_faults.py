"""The provider chain against fault-injecting OpenAI-compatible servers on loopback (must-show 1).

Fallback on 429, 5xx and timeouts; no request lost; cooldowns respected; costs attributed to
the model, endpoint and use case that incurred them; budget alerts fire.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
from support.llm_harness import USE_CASE, FakeTime, LLMStack, priced

from platform_assets.llm.llm_cost_report import BUDGET_CHECK
from resources.llm.ledger import LLMLedger
from resources.llm.providers import (
    AllProvidersFailed,
    ChatCall,
    CircuitBreaker,
    ProviderChain,
    Reply,
)
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
QUESTION = "Who must approve refunds over 500 euros?"


def stack_with(tmp_path, primary, secondary=None, **chain) -> LLMStack:
    providers = [priced("primary", primary.base_url, "gpt-4o-mini")]
    if secondary is not None:
        providers.append(priced("secondary", secondary.base_url, "gpt-4o"))
    stack = LLMStack(tmp_path, providers, **chain)
    stack.sync_index()
    return stack


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout"])
def test_a_failing_provider_falls_back_to_the_next(tmp_path, fault):
    with (
        LoopbackProvider("primary", script=[fault] * 3, hold_seconds=1.0) as primary,
        LoopbackProvider("secondary") as secondary,
    ):
        stack = stack_with(tmp_path, primary, secondary, timeout_seconds=0.3)
        answer = stack.gateway().answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert answer.provider == "secondary" and answer.model == "gpt-4o"
    assert answer.text.startswith("[secondary:gpt-4o]")
    assert [a["outcome"] for a in answer.attempts] == [fault] * 3 + ["ok"]
    assert primary.requests() == 3, "three tries at the primary: the first and two retries"


def test_a_transient_error_is_retried_on_the_same_provider(tmp_path):
    with LoopbackProvider("primary", script=["500", "spike", "ok"], spike_seconds=0.2) as primary:
        stack = stack_with(tmp_path, primary)
        gateway = stack.gateway()
        first = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        second = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert first.provider == "primary"
    assert [a["outcome"] for a in first.attempts] == ["500", "ok"]
    assert first.attempts[1]["seconds"] >= 0.2, "the latency spike was waited out, not failed"
    assert second.provider == "primary" and len(second.attempts) == 1


def test_with_every_remote_provider_down_the_embedded_answerer_still_answers(tmp_path):
    with (
        LoopbackProvider("primary", rates={"500": 1.0}) as primary,
        LoopbackProvider("secondary", rates={"429": 1.0}) as secondary,
    ):
        stack = stack_with(tmp_path, primary, secondary)
        answer = stack.gateway().answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert answer.provider == "embedded"
    assert "team lead" in answer.text
    assert [a["provider"] for a in answer.attempts] == ["primary"] * 3 + ["secondary"] * 3 + [
        "embedded"
    ]


def test_no_request_is_lost_under_mixed_faults_and_concurrency(tmp_path):
    questions = [
        "Who must approve refunds over 500 euros?",
        "How long is chargeback evidence retained?",
        "When does a whitelist entry expire?",
        "How quickly must the on-call analyst acknowledge a page?",
    ]
    rates = {"429": 0.2, "500": 0.15, "503": 0.05, "timeout": 0.05, "spike": 0.1}
    with (
        LoopbackProvider("primary", rates=rates, hold_seconds=0.6, seed=1) as primary,
        LoopbackProvider("secondary", rates={"500": 0.3}, seed=2) as secondary,
    ):
        stack = stack_with(
            tmp_path, primary, secondary, timeout_seconds=0.3, failure_threshold=1000
        )
        gateway = stack.gateway()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda n: gateway.answer(
                        questions[n % 4], USE_CASE, f"user-{n}", use_cache=False
                    ),
                    range(80),
                )
            )
        calls = gateway.ledger.calls()

    assert len(answers) == 80 and all(a.text for a in answers)
    assert calls.height == 80 and calls["request_id"].n_unique() == 80
    assert set(calls["request_id"]) == {a.request_id for a in answers}
    assert primary.counts["429"] + primary.counts["500"] > 10, "faults were injected"
    assert calls["fallbacks"].sum() > 10, "some requests needed a retry or a fallback"
    assert set(calls["provider"]) <= {"primary", "secondary", "embedded"}


def test_an_open_breaker_skips_the_provider_until_its_cooldown_has_passed(tmp_path):
    with (
        LoopbackProvider("primary", script=["500", "500"]) as primary,
        LoopbackProvider("secondary") as secondary,
    ):
        stack = stack_with(
            tmp_path,
            primary,
            secondary,
            attempts_per_provider=2,
            failure_threshold=1,
            cooldown_seconds=30,
        )
        gateway = stack.gateway()
        opened = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        during = [gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False) for _ in range(3)]
        hits_during_cooldown = primary.requests()
        stack.time.advance(29)
        still_cooling = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        stack.time.advance(2)
        after = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert opened.provider == "secondary"
    assert hits_during_cooldown == 2, "no request reached the primary while its breaker was open"
    for answer in [*during, still_cooling]:
        assert answer.provider == "secondary"
        assert answer.attempts[0] == {
            "provider": "primary",
            "model": "gpt-4o-mini",
            "outcome": "cooldown",
            "seconds": 0.0,
        }
    assert after.provider == "primary", "after the cooldown the trial request closed the breaker"
    assert primary.requests() == 3


def test_the_breaker_opens_on_the_threshold_and_lets_one_trial_through_after_cooling():
    time = FakeTime()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=30, now=time)

    breaker.failed("p")
    assert breaker.allows("p"), "one failure is under the threshold"
    breaker.failed("p")
    assert not breaker.allows("p")
    time.advance(30)
    assert [breaker.allows("p"), breaker.allows("p")] == [True, False], "a single trial"
    breaker.failed("p")
    time.advance(29)
    assert not breaker.allows("p"), "a failed trial opens it for a whole cooldown again"
    time.advance(1)
    assert breaker.allows("p")
    breaker.succeeded("p")
    assert breaker.allows("p") and breaker.allows("p"), "a good trial closes it"


def test_a_retry_after_longer_than_the_cooldown_is_honoured(tmp_path):
    with (
        LoopbackProvider("primary", script=["429"], retry_after=120) as primary,
        LoopbackProvider("secondary") as secondary,
    ):
        stack = stack_with(
            tmp_path,
            primary,
            secondary,
            attempts_per_provider=1,
            failure_threshold=1,
            cooldown_seconds=30,
        )
        gateway = stack.gateway()
        gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        stack.time.advance(60)
        skipped = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        stack.time.advance(61)
        retried = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert skipped.provider == "secondary" and skipped.attempts[0]["outcome"] == "cooldown"
    assert retried.provider == "primary"


def test_costs_are_attributed_to_the_answering_model_endpoint_and_use_case(tmp_path):
    with (
        LoopbackProvider("primary", script=["ok", "500", "500", "500"]) as primary,
        LoopbackProvider("secondary") as secondary,
    ):
        stack = stack_with(tmp_path, primary, secondary)
        gateway = stack.gateway()
        on_primary = gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        on_secondary = gateway.answer(QUESTION, USE_CASE, "u2", "eval", use_cache=False)
        calls = gateway.ledger.calls()

    prices = stack.resources["llm_ledger"].prices
    rows = {row["request_id"]: row for row in calls.iter_rows(named=True)}
    for answer, model, endpoint in (
        (on_primary, "gpt-4o-mini", "chat"),
        (on_secondary, "gpt-4o", "eval"),
    ):
        row = rows[answer.request_id]
        price = prices[model]
        expected = (
            row["prompt_tokens"] * price.input_per_million
            + row["completion_tokens"] * price.output_per_million
        ) / 1e6
        assert (row["model"], row["endpoint"], row["use_case"]) == (model, endpoint, USE_CASE)
        assert row["cost_usd"] == pytest.approx(expected) and expected > 0
    assert rows[on_secondary.request_id]["cost_usd"] > rows[on_primary.request_id]["cost_usd"]


def test_a_model_without_a_price_is_an_error_not_free(tmp_path):
    ledger = LLMLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", prices={}).open()
    with pytest.raises(KeyError, match="gpt-4o-mini"):
        ledger.cost("gpt-4o-mini", 10, 10)


def test_budget_alerts_fire_when_spend_passes_the_daily_budget(tmp_path, instance):
    with LoopbackProvider("primary") as primary:
        stack = stack_with(tmp_path, primary)
        gateway = stack.gateway()
        for n in range(5):
            gateway.answer(QUESTION, USE_CASE, f"u{n}", use_cache=False)
        spent = gateway.ledger.calls()["cost_usd"].sum()
    # The fixed clock's day must be the ledger rows' day; the rows carry the real time.
    stack.resources["clock"] = type(stack.resources["clock"])()
    stack.resources["llm_ledger"] = LLMLedger(
        url=stack.resources["llm_ledger"].url,
        daily_budget_usd={"*": spent * 10, USE_CASE: spent / 2},
    )

    result = stack.materialize(instance, "llm_cost_report")

    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == BUDGET_CHECK and not check.passed
    alerts = stack.resources["alerter"].read()
    assert [a["details"]["budget"] for a in alerts] == [USE_CASE]
    assert alerts[0]["severity"] == "error" and "200%" in alerts[0]["title"]
    by_model = result.asset_materializations_for_node("llm_cost_report")[0].metadata["by_model"]
    assert "gpt-4o-mini" in by_model.value


def test_the_cost_report_of_a_day_without_calls_is_zero_spend(tmp_path, instance):
    """A fresh instance has an empty ledger; its first hourly report must not fail."""
    stack = LLMStack(tmp_path)

    result = stack.materialize(instance, "llm_cost_report")

    assert result.success
    metadata = result.asset_materializations_for_node("llm_cost_report")[0].metadata
    assert metadata["calls"].value == 0 and metadata["cost_usd"].value == 0.0
    assert result.get_asset_check_evaluations()[0].passed


class _Flaky:
    """A last-resort provider that fails a given number of times, then answers."""

    name = "embedded"
    models = ("flywheel-extractive",)

    def __init__(self, failures: int):
        self.failures = failures

    def complete(self, call, model):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("broken request")
        return Reply("answered", 1, 1)


def test_the_last_resort_is_never_cooled_down():
    chain = ProviderChain(
        [_Flaky(failures=5)], CircuitBreaker(1, 3600, FakeTime()), attempts_per_provider=1
    )
    call = ChatCall(messages=[{"role": "user", "content": "q"}], model="flywheel-extractive")

    for _ in range(5):
        with pytest.raises(AllProvidersFailed):
            chain.complete(call)
    assert chain.complete(call).reply.text == "answered"
