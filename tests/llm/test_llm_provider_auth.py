"""A provider that refuses its credentials (401/403) is a configuration error, not an outage.

The chain does not retry it or fall back to another provider (an answer from another model
would hide the bad key); it alerts, at most once per provider per alert interval, and the
request fails with a message naming the provider and the status.
"""

import pytest
from support.llm_harness import USE_CASE, LLMStack, priced, refusing_provider

from resources.llm.providers import AllProvidersFailed
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
QUESTION = "Who must approve refunds over 500 euros?"


def refused_stack(tmp_path, refusing: LoopbackProvider, secondary: LoopbackProvider, **chain):
    providers = [
        priced("primary", refusing.base_url, "gpt-4o-mini"),
        priced("secondary", secondary.base_url, "gpt-4o"),
    ]
    stack = LLMStack(tmp_path, providers, **chain)
    stack.sync_index()
    return stack


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_fails_the_request_and_alerts_instead_of_falling_back(tmp_path, status):
    with refusing_provider(status) as refusing, LoopbackProvider("secondary") as secondary:
        stack = refused_stack(tmp_path, refusing, secondary)
        gateway = stack.gateway()
        # An AllProvidersFailed, so the HTTP app answers 503 with this message.
        with pytest.raises(AllProvidersFailed, match=f"'primary'.*{status}") as refused:
            gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert refusing.requests() == 1, "a refused key is not retried"
    assert secondary.requests() == 0, "nor does another provider answer in its place"
    assert [(a.provider, a.outcome) for a in refused.value.attempts] == [("primary", str(status))]
    assert ("api_key" if status == 401 else "may not use this model") in str(refused.value)
    assert gateway.ledger.calls().height == 0, "no answer, so no call to price"
    alerts = stack.resources["alerter"].read()
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "error"
    assert alerts[0]["title"] == f"LLM provider primary refused its credentials ({status})"
    assert alerts[0]["details"] == {"provider": "primary", "model": "gpt-4o-mini", "status": status}


def test_a_refused_key_alerts_once_per_interval_not_per_request(tmp_path):
    with refusing_provider(401) as refusing, LoopbackProvider("secondary") as secondary:
        stack = refused_stack(tmp_path, refusing, secondary, auth_alert_interval_seconds=600)
        gateway = stack.gateway()
        for _ in range(5):
            with pytest.raises(AllProvidersFailed):
                gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        stack.time.advance(599)
        with pytest.raises(AllProvidersFailed):
            gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)
        assert len(stack.resources["alerter"].read()) == 1
        stack.time.advance(1)
        with pytest.raises(AllProvidersFailed):
            gateway.answer(QUESTION, USE_CASE, "u1", use_cache=False)

    assert refusing.requests() == 7, "every request still tries the provider (a fixed key works)"
    assert len(stack.resources["alerter"].read()) == 2
