"""A/B outcomes through POST /v1/feedback: one per request id, and only for answers the gateway
served (to the caller's use case), so nobody can stuff the A/B analysis."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from support.llm_harness import KEY, USE_CASE, LLMStack, ask

from resources.llm.keys import ApiKeys
from serving.llm.app import create_app

pytestmark = pytest.mark.unit
OTHER = "chargeback_assistant"
OTHER_KEY = "fw-other-key"
QUESTION = "Who must approve refunds over 500 euros?"


@pytest.fixture
def client(stack: LLMStack) -> TestClient:
    keys = ApiKeys.of({USE_CASE: KEY, OTHER: OTHER_KEY})
    return TestClient(create_app(stack.gateway(), [USE_CASE, OTHER], keys))


def served_id(client: TestClient) -> str:
    response = ask(client, QUESTION)
    assert response.status_code == 200
    return response.json()["id"]


def send(client: TestClient, request_id: str, success: bool, key: str = KEY):
    return client.post(
        "/v1/feedback",
        json={"request_id": request_id, "success": success},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_a_second_outcome_for_a_request_is_a_409_and_the_first_stands(stack, client):
    request_id = served_id(client)

    first, second = send(client, request_id, True), send(client, request_id, False)

    assert first.status_code == 200 and second.status_code == 409
    error = second.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == ("request_id", "feedback_already_recorded")
    assert request_id in error["message"]
    outcomes = stack.gateway().ledger.outcomes()
    assert outcomes["success"].to_list() == [1]


def test_concurrent_outcomes_for_one_request_record_exactly_one(stack, client):
    request_id = served_id(client)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda n: send(client, request_id, n % 2 == 0).status_code, range(16))
        )

    assert sorted(statuses) == [200] + [409] * 15
    assert stack.gateway().ledger.outcomes().height == 1


def test_two_ledgers_on_one_file_still_keep_one_outcome_per_request(stack, client):
    """Replicas of the gateway share the ledger file; the check and the insert are one statement."""
    request_id = served_id(client)
    call = stack.gateway().ledger.find_call(request_id)
    assert call is not None
    replicas = [stack.resources["llm_ledger"].open() for _ in range(2)]
    outcome = {
        k: call[k] for k in ("request_id", "use_case", "user_id", "variant", "prompt_version")
    }

    recorded = [ledger.record_outcome(**outcome, success=1) for ledger in replicas]

    assert recorded == [True, False]
    assert replicas[0].outcomes().height == 1


def test_feedback_only_for_an_answer_served_to_the_callers_use_case(stack, client):
    evaluated = stack.gateway().answer(QUESTION, USE_CASE, "golden-set", endpoint="eval")
    request_id = served_id(client)

    for response in (
        send(client, "chatcmpl-made-up", True),
        send(client, evaluated.request_id, True),  # the evaluation's call, never served
        send(client, request_id, True, key=OTHER_KEY),  # served, but to another use case
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "request_not_found"
    assert stack.gateway().ledger.outcomes().height == 0
    assert send(client, request_id, True).status_code == 200
