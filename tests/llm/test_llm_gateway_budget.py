"""The daily budgets are hard in the request path: once a use case's (or the total) spend reaches
its budget, new questions are refused with a 429 in OpenAI's shape, next to the cost report's
alert; cached answers, which cost nothing, are still served."""

import datetime

import pytest
from fastapi.testclient import TestClient
from support.llm_harness import KEY, USE_CASE, LLMStack, ask, priced

from resources.llm.budget import BudgetExceeded, SpendGuard
from resources.llm.keys import ApiKeys
from resources.llm.ledger import LLMLedger
from serving.llm.app import create_app
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
QUESTIONS = [
    "Who must approve refunds over 500 euros?",
    "How long is chargeback evidence retained?",
    "When does a whitelist entry expire?",
]


def budgeted(tmp_path, provider: LoopbackProvider, budgets: dict[str, float], **ledger) -> LLMStack:
    stack = LLMStack(tmp_path, [priced("primary", provider.base_url, "gpt-4o-mini")])
    stack.resources["llm_ledger"] = LLMLedger(
        url=f"sqlite:///{tmp_path / 'ledger.sqlite'}", daily_budget_usd=budgets, **ledger
    )
    stack.sync_index()
    return stack


def test_a_spent_budget_refuses_new_questions_with_a_429_and_serves_cached_ones(tmp_path):
    with LoopbackProvider("primary") as provider:
        stack = budgeted(tmp_path, provider, {"*": 50.0, USE_CASE: 1e-9})
        gateway = stack.gateway()
        client = TestClient(create_app(gateway, [USE_CASE], ApiKeys.of({USE_CASE: KEY})))
        first = ask(client, QUESTIONS[0])
        refused = ask(client, QUESTIONS[1])
        cached = ask(client, QUESTIONS[0])
        asked = provider.requests()

    assert first.status_code == 200 and first.json()["flywheel"]["cost_usd"] > 0
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert USE_CASE in error["message"] and "daily_budget_usd" in error["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86_400, "until the next UTC day"
    assert cached.status_code == 200 and cached.headers["x-flywheel-cache"] == "hit"
    assert asked == 1, "the refused question never reached the provider"
    assert gateway.ledger.calls()["cache_hit"].to_list() == [0, 1], "a refusal spends nothing"


def test_the_total_budget_is_hard_too(tmp_path):
    with LoopbackProvider("primary") as provider:
        stack = budgeted(tmp_path, provider, {"*": 1e-9, USE_CASE: 50.0})
        gateway = stack.gateway()
        gateway.answer(QUESTIONS[0], USE_CASE, "u1")
        with pytest.raises(BudgetExceeded, match="all use cases"):
            gateway.answer(QUESTIONS[1], USE_CASE, "u1")


def test_without_a_hard_limit_the_budget_only_alerts(tmp_path):
    with LoopbackProvider("primary") as provider:
        stack = budgeted(tmp_path, provider, {USE_CASE: 1e-9}, hard_limit_fraction=None)
        gateway = stack.gateway()
        answers = [gateway.answer(q, USE_CASE, "u1") for q in QUESTIONS]

    assert all(a.cost_usd > 0 for a in answers)


def test_the_hard_limit_may_sit_above_the_alerting_budget(tmp_path):
    with LoopbackProvider("primary") as provider:
        stack = budgeted(tmp_path, provider, {USE_CASE: 1.0}, hard_limit_fraction=1.5)
        gateway = stack.gateway()
        assert gateway.budget is not None and gateway.budget.limits == {USE_CASE: 1.5}


def test_spend_written_by_another_replica_counts_once_the_ledger_is_reread(tmp_path):
    with LoopbackProvider("primary") as provider:
        stack = budgeted(tmp_path, provider, {USE_CASE: 0.01})
        gateway = stack.gateway(budget_refresh_seconds=5)
        gateway.answer(QUESTIONS[0], USE_CASE, "u1")
        replica = stack.resources["llm_ledger"].open()
        row = gateway.ledger.calls().drop("at").row(0, named=True)
        replica.record_call(**{**row, "request_id": "elsewhere", "cost_usd": 0.02})
        stack.time.advance(4)
        gateway.answer(QUESTIONS[1], USE_CASE, "u1")  # within the refresh: not seen yet
        stack.time.advance(1)
        with pytest.raises(BudgetExceeded, match=r"\$0\.02"):
            gateway.answer(QUESTIONS[2], USE_CASE, "u1")


class Clock:
    def __init__(self, at: datetime.datetime):
        self.at = at

    def __call__(self) -> datetime.datetime:
        return self.at


def test_a_new_utc_day_opens_the_budget_again(tmp_path):
    ledger = LLMLedger(url=f"sqlite:///{tmp_path / 'ledger.sqlite'}").open()
    clock = Clock(datetime.datetime(2026, 11, 20, 23, 59, tzinfo=datetime.UTC))
    guard = SpendGuard(ledger, {USE_CASE: 1.0}, refresh_seconds=3600, today=clock)
    guard.check(USE_CASE)
    guard.spent(USE_CASE, 1.0)

    with pytest.raises(BudgetExceeded) as refused:
        guard.check(USE_CASE)
    assert refused.value.retry_after_seconds == 60
    clock.at += datetime.timedelta(minutes=1)
    guard.check(USE_CASE)  # the ledger holds nothing for the new day
