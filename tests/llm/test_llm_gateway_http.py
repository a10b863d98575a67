"""The gateway over HTTP: the official openai SDK talks to it like to any OpenAI-compatible API."""

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from support.llm_harness import USE_CASE, LLMStack
from support.servers import serve

from serving.llm.app import create_app

pytestmark = pytest.mark.unit


@pytest.fixture
def served(tmp_path):
    stack = LLMStack(tmp_path)
    stack.sync_index()
    with serve(create_app(stack.gateway(), [USE_CASE])) as url:
        yield stack, url


def test_the_openai_sdk_gets_an_answer_a_cache_hit_and_can_send_feedback(served):
    stack, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

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
    feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": answer.id, "success": True})
    assert feedback.status_code == 200
    outcome = stack.gateway().ledger.outcomes().row(0, named=True)
    assert (outcome["request_id"], outcome["user_id"], outcome["success"]) == (
        answer.id,
        "analyst-7",
        1,
    )


def test_bad_requests_get_clear_errors(served):
    _, url = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

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
    missing = httpx.post(f"{url}/v1/feedback", json={"request_id": "nope", "success": True})
    assert missing.status_code == 404 and "nope" in missing.text


def test_before_the_index_is_built_the_gateway_says_what_to_do(tmp_path):
    stack = LLMStack(tmp_path)
    client = TestClient(create_app(stack.gateway(), [USE_CASE]))

    response = client.post(
        "/v1/chat/completions",
        json={"model": USE_CASE, "messages": [{"role": "user", "content": "Who approves?"}]},
    )

    assert response.status_code == 503
    assert "materialize rag_index" in response.json()["error"]["message"]
