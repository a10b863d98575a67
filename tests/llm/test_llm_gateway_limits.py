"""Caps on what one request may carry: the body's bytes (413), and the messages' count, length
and tokens (422), each error naming the field and the limit in OpenAI's shape."""

import json

import openai
import pytest
from fastapi.testclient import TestClient
from support.llm_harness import KEY, USE_CASE, LLMStack, ask
from support.servers import serve

from resources.llm.gateway import GatewaySettings
from resources.llm.keys import ApiKeys
from serving.llm.app import create_app

pytestmark = pytest.mark.unit
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = GatewaySettings(
    max_body_bytes=4_000, max_messages=4, max_message_chars=600, max_prompt_tokens=400
)
QUESTION = "Who must approve refunds over 500 euros?"


@pytest.fixture
def client(stack: LLMStack) -> TestClient:
    return TestClient(create_app(stack.gateway(), [USE_CASE], ApiKeys.of({USE_CASE: KEY}), LIMITS))


def error_of(response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_the_caps_have_documented_defaults():
    fields = GatewaySettings.model_fields
    defaults = GatewaySettings()

    assert (defaults.max_body_bytes, defaults.max_messages) == (65_536, 32)
    assert (defaults.max_message_chars, defaults.max_prompt_tokens) == (8_000, 4_000)
    for name in ("max_body_bytes", "max_messages", "max_message_chars", "max_prompt_tokens"):
        assert fields[name].description, name


def test_requests_within_the_caps_are_answered(client):
    response = ask(client, [{"role": "user", "content": QUESTION}])

    assert response.status_code == 200


def test_a_body_over_the_cap_is_a_413_naming_the_limit(client):
    big = [{"role": "user", "content": "x" * 5_000}]
    declared = ask(client, big)
    body = json.dumps({"model": USE_CASE, "messages": big}).encode()
    chunked = client.post(
        "/v1/chat/completions",
        content=iter([body[:2_000], body[2_000:]]),  # no Content-Length: counted as it arrives
        headers={**AUTH, "Content-Type": "application/json"},
    )

    for response in (declared, chunked):
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "request_too_large"
        assert "4000 bytes" in error["message"] and "max_body_bytes" in error["message"]


def test_an_unauthenticated_oversized_body_is_refused_for_the_key_first(client):
    response = client.post("/v1/chat/completions", content=b"x" * 10_000)

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("messages", "param", "code", "named"),
    [
        (
            [{"role": "user", "content": QUESTION}] * 5,
            "messages",
            "too_many_messages",
            "4 messages",
        ),
        (
            [{"role": "system", "content": "hi"}, {"role": "user", "content": "y" * 601}],
            "messages.1.content",
            "message_too_long",
            "600 characters",
        ),
        (
            [{"role": "user", "content": "z " * 290}] * 3,
            "messages",
            "context_length_exceeded",
            "400 tokens",
        ),
    ],
)
def test_too_many_messages_a_too_long_one_or_too_many_tokens_are_a_422(
    client, messages, param, code, named
):
    response = ask(client, messages)

    assert response.status_code == 422
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, code)
    assert named in error["message"]
    setting = {"too_many_messages": "max_messages", "message_too_long": "max_message_chars"}
    assert setting.get(code, "max_prompt_tokens") in error["message"]


def test_the_openai_sdk_shows_the_caps_message(stack):
    app = create_app(stack.gateway(), [USE_CASE], ApiKeys.of({USE_CASE: KEY}), LIMITS)
    with serve(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError, match="max_messages"):
            client.chat.completions.create(
                model=USE_CASE, messages=[{"role": "user", "content": QUESTION}] * 5
            )
        with pytest.raises(openai.APIStatusError, match="max_body_bytes") as too_large:
            client.chat.completions.create(
                model=USE_CASE, messages=[{"role": "user", "content": "x" * 5_000}]
            )

    assert too_large.value.status_code == 413
