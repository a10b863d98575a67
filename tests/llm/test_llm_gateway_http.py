"""The gateway over HTTP: the official openai SDK talks to it like to any OpenAI-compatible API."""

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from support.llm_harness import KEY, USE_CASE, LLMStack, ask
from support.servers import serve

from resources.llm.keys import ApiKeys
from serving.llm.app import create_app

pytestmark = pytest.mark.unit
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def served(stack: LLMStack):
    with serve(create_app(stack.gateway(), [USE_CASE], ApiKeys.of({USE_CASE: KEY}))) as url:
        yield stack, url


def test_the_openai_sdk_gets_an_answer_a_cache_hit_and_can_send_feedback(served):
    stack, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

    assert [m.id for m in client.models.list()] == [USE_CASE]
    question = [
        {
            "role": "user",
            "content": "Within how many hours must an account takeover investigation be closed?",
        }
    ]
    first = client.chat.completions.with_raw_response.create(
        model=USE_CASE, messages=question, user="analyst-7"
    )
    again = client.chat.completions.with_raw_response.create(
        model=USE_CASE, messages=question, user="analyst-7"
    )
    answer = first.parse()

    assert "72 hours" in (answer.choices[0].message.content or "")
    assert answer.usage is not None and answer.usage.total_tokens > 0
    assert (first.headers["x-flywheel-cache"], again.headers["x-flywheel-cache"]) == ("miss", "hit")
    assert first.headers["x-flywheel-variant"] == "production"
    feedback = httpx.post(
        f"{url}/v1/feedback", json={"request_id": answer.id, "success": True}, headers=AUTH
    )
    assert feedback.status_code == 200
    outcome = stack.gateway().ledger.outcomes().row(0, named=True)
    assert (outcome["request_id"], outcome["user_id"], outcome["success"]) == (
        answer.id,
        "analyst-7",
        1,
    )


def test_bad_requests_get_clear_errors(served):
    _, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

    with pytest.raises(openai.NotFoundError, match="use case"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="role 'user'"):
        client.chat.completions.create(
            model=USE_CASE, messages=[{"role": "system", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
        client.chat.completions.create(
            model=USE_CASE, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    missing = httpx.post(
        f"{url}/v1/feedback", json={"request_id": "nope", "success": True}, headers=AUTH
    )
    assert missing.status_code == 404 and "nope" in missing.text


def test_before_the_index_is_built_the_gateway_says_what_to_do(tmp_path):
    stack = LLMStack(tmp_path)
    client = TestClient(create_app(stack.gateway(), [USE_CASE], ApiKeys.of({USE_CASE: KEY})))

    response = ask(client, "Who approves?")

    assert response.status_code == 503
    assert "materialize rag_index" in response.json()["error"]["message"]


def test_an_unexpected_failure_is_a_500_in_openais_shape(stack):
    gateway = stack.gateway()
    gateway.ledger.close()  # a broken dependency: the ledger cannot record the call
    app = create_app(gateway, [USE_CASE], ApiKeys.of({USE_CASE: KEY}))
    client = TestClient(app, raise_server_exceptions=False)

    response = ask(client, "Who approves?")

    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "ResourceClosedError" in error["message"]
