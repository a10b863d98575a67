"""An embeddings outage degrades the gateway instead of failing it: the cache is skipped, the
passages come from keyword retrieval, and a header says so; never a 500."""

import pytest
from fastapi.testclient import TestClient
from support.llm_harness import KEY, USE_CASE, ask, remote_embeddings

from resources.llm.cache import SemanticCache
from resources.llm.gateway import Gateway
from resources.llm.keys import ApiKeys
from serving.llm.app import create_app
from serving.llm.loopback import LoopbackProvider

pytestmark = pytest.mark.unit
REFUNDS = "Who must approve refunds over 500 euros?"
TAKEOVER = "Within how many hours must an account takeover investigation be closed?"


def test_an_embeddings_outage_answers_from_keyword_retrieval_and_says_so(tmp_path):
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
        gateway = stack.gateway()
        client = TestClient(create_app(gateway, [USE_CASE], ApiKeys.of({USE_CASE: KEY})))
        healthy = ask(client, REFUNDS)
    # The endpoint is gone: every embedding request is refused at the socket.
    outage = [ask(client, question) for question in (REFUNDS, TAKEOVER, REFUNDS)]

    assert healthy.status_code == 200 and "x-flywheel-degraded" not in healthy.headers
    for response in outage:
        assert response.status_code == 200
        assert response.headers["x-flywheel-degraded"] == "embeddings"
        assert response.headers["x-flywheel-cache"] == "bypass"
        assert response.json()["flywheel"]["degraded"] == ["embeddings"]
    refunds, takeover = outage[0].json(), outage[1].json()
    assert "team lead" in refunds["choices"][0]["message"]["content"]
    assert "refunds.md" in refunds["flywheel"]["sources"]
    assert "72 hours" in takeover["choices"][0]["message"]["content"]
    assert not outage[2].json()["flywheel"]["cache_hit"], "the healthy answer was not served"
    assert gateway.cache.size() == 1, "nothing was cached while degraded"
    assert gateway.ledger.calls().height == 4


def test_a_failing_embedder_is_skipped_for_a_cooldown_then_tried_again(tmp_path):
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
        gateway = stack.gateway(embedder_failure_threshold=2, embedder_cooldown_seconds=30)
        before = endpoint.requests()
        endpoint.rates = {"500": 1.0}
        degraded = [gateway.answer(REFUNDS, USE_CASE, "u1") for _ in range(5)]
        tried_during_outage = endpoint.requests() - before
        endpoint.rates = {}
        stack.time.advance(29)
        still_cooling = gateway.answer(REFUNDS, USE_CASE, "u1")
        stack.time.advance(1)
        recovered = [gateway.answer(REFUNDS, USE_CASE, "u1") for _ in range(2)]

    assert all(answer.degraded == ["embeddings"] for answer in [*degraded, still_cooling])
    assert tried_during_outage == 2, "after two failures the breaker skips the endpoint"
    assert [answer.degraded for answer in recovered] == [[], []]
    assert [answer.cache_hit for answer in recovered] == [False, True]


def test_a_gateway_started_during_an_outage_serves_and_calibrates_its_cache_later(tmp_path):
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
        endpoint.rates = {"500": 1.0}
        gateway = stack.gateway(embedder_cooldown_seconds=30)  # calibration fails: no crash
        degraded = gateway.answer(REFUNDS, USE_CASE, "u1")
        endpoint.rates = {}
        stack.time.advance(30)
        answers = [gateway.answer(REFUNDS, USE_CASE, "u1") for _ in range(2)]

    assert degraded.degraded == ["embeddings"] and "team lead" in degraded.text
    assert gateway.cache.threshold is not None, "calibrated once the endpoint answered"
    assert [(a.degraded, a.cache_hit) for a in answers] == [([], False), ([], True)]


def test_the_evaluation_never_scores_a_degraded_path(tmp_path):
    """The evaluation builds its Gateway without a breaker: an embedder failure fails it."""
    with LoopbackProvider("embeddings") as endpoint:
        stack = remote_embeddings(tmp_path, endpoint)
        r = stack.ns
        evaluation = Gateway(
            r.prompts,
            r.vector_index,
            r.embedder,
            r.llm_providers.build_chain(),
            r.llm_ledger.open(),
            SemanticCache(threshold=1.0, ttl_seconds=0.0),
        )
        endpoint.rates = {"500": 1.0}
        with pytest.raises(Exception, match="500"):
            evaluation.answer(REFUNDS, USE_CASE, "golden-set", endpoint="eval", use_cache=False)
