"""Who may call the gateway: one API key per use case from the environment, kept hashed; every
refusal, and any malformed request, in OpenAI's error shape."""

import hashlib

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from support.llm_harness import USE_CASE, LLMStack, ask
from support.servers import serve

from resources.llm.keys import DEV_KEY, ApiKeys, MissingApiKeys, hash_key
from serving.llm.app import check_exposure, create_app

pytestmark = pytest.mark.unit
OTHER = "chargeback_assistant"
KEY = "fw-test-fraud-ops-key"
OTHER_KEY = "fw-test-chargeback-key"
QUESTION = [{"role": "user", "content": "Who must approve refunds over 500 euros?"}]


def openai_error(response: httpx.Response) -> dict:
    """The error object, checked to have exactly OpenAI's four fields."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.fixture
def client(stack: LLMStack) -> TestClient:
    keys = ApiKeys.of({USE_CASE: KEY, OTHER: OTHER_KEY})
    return TestClient(create_app(stack.gateway(), [USE_CASE, OTHER], keys))


def test_keys_come_from_the_environment_in_clear_or_hashed_and_only_their_hash_is_kept():
    environ = {
        "FLYWHEEL_LLM_KEY_FRAUD_OPS_ASSISTANT": "fw-one, fw-rotated",
        "FLYWHEEL_LLM_KEY_SHA256_CHARGEBACK_ASSISTANT": hash_key("fw-two"),
    }

    keys = ApiKeys.from_environment([USE_CASE, OTHER], "prod", environ)

    assert keys.use_cases("fw-one") == keys.use_cases("fw-rotated") == {USE_CASE}
    assert keys.use_cases("fw-two") == {OTHER}
    assert keys.use_cases("fw-three") == keys.use_cases(DEV_KEY) == frozenset()
    assert not keys.development
    held = {digest for digest, _ in keys.digests}
    assert held == {hashlib.sha256(k.encode()).digest() for k in ("fw-one", "fw-rotated", "fw-two")}
    assert "fw-one" not in repr(keys), "the clear key is not kept"


def test_prod_does_not_start_without_a_key_and_names_the_variables():
    with pytest.raises(MissingApiKeys, match="FLYWHEEL_LLM_KEY_CHARGEBACK_ASSISTANT") as missing:
        ApiKeys.from_environment(
            [USE_CASE, OTHER], "prod", {"FLYWHEEL_LLM_KEY_FRAUD_OPS_ASSISTANT": "k"}
        )
    assert "FLYWHEEL_LLM_KEY_SHA256_CHARGEBACK_ASSISTANT" in str(missing.value)
    with pytest.raises(ValueError, match="SHA-256 hex"):
        ApiKeys.from_environment(
            [USE_CASE], "prod", {"FLYWHEEL_LLM_KEY_SHA256_FRAUD_OPS_ASSISTANT": "k"}
        )


def test_local_opens_keyless_use_cases_with_the_dev_key_on_loopback_only():
    keys = ApiKeys.from_environment(
        [USE_CASE, OTHER], "local", {"FLYWHEEL_LLM_KEY_FRAUD_OPS_ASSISTANT": KEY}
    )

    assert keys.use_cases(DEV_KEY) == {OTHER}, "a configured key replaces the dev key"
    assert keys.use_cases(KEY) == {USE_CASE}
    check_exposure("127.0.0.1", keys)
    check_exposure("localhost", keys)
    with pytest.raises(SystemExit, match="FLYWHEEL_LLM_KEY_CHARGEBACK_ASSISTANT"):
        check_exposure("0.0.0.0", keys)
    check_exposure("0.0.0.0", ApiKeys.of({USE_CASE: KEY}))


def test_a_request_without_a_key_or_with_a_wrong_one_is_a_401(client):
    missing = client.post("/v1/chat/completions", json={"model": USE_CASE, "messages": QUESTION})
    wrong = ask(client, QUESTION, key="fw-guessed")
    not_bearer = client.get("/v1/models", headers={"Authorization": f"Basic {KEY}"})

    assert missing.status_code == wrong.status_code == not_bearer.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    error = openai_error(missing)
    assert "Authorization: Bearer" in error["message"] and error["code"] == "missing_api_key"
    assert openai_error(wrong)["code"] == openai_error(not_bearer)["code"] == "invalid_api_key"
    assert "fw-guessed" not in wrong.text, "a presented key is never echoed"


def test_every_v1_route_needs_a_key_and_health_does_not(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/feedback", json={"request_id": "x", "success": True}).status_code == 401


def test_a_key_opens_only_its_own_use_case(client):
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}

    models = client.get("/v1/models", headers=headers)
    forbidden = ask(client, QUESTION, key=OTHER_KEY)

    assert [m["id"] for m in models.json()["data"]] == [OTHER]
    assert forbidden.status_code == 403
    error = openai_error(forbidden)
    assert error["param"] == "model" and error["code"] == "model_not_allowed"
    assert USE_CASE in error["message"]


def test_the_openai_sdk_raises_its_own_errors_for_refused_keys(stack):
    keys = ApiKeys.of({USE_CASE: KEY, OTHER: OTHER_KEY})
    with serve(create_app(stack.gateway(), [USE_CASE, OTHER], keys)) as url:
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="fw-guessed", max_retries=0)
        other = openai.OpenAI(base_url=f"{url}/v1", api_key=OTHER_KEY, max_retries=0)
        right = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        with pytest.raises(openai.AuthenticationError, match="API key"):
            wrong.chat.completions.create(model=USE_CASE, messages=QUESTION)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError, match=USE_CASE):
            other.chat.completions.create(model=USE_CASE, messages=QUESTION)  # type: ignore[arg-type]
        answer = right.chat.completions.create(model=USE_CASE, messages=QUESTION)  # type: ignore[arg-type]

    assert "team lead" in (answer.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ('{"model": "fraud_ops_assistant", "messages": [', 400, None),
        ("[1, 2]", 422, None),
        ('{"model": "fraud_ops_assistant"}', 422, "messages"),
        (
            '{"model": "fraud_ops_assistant", "messages": [{"role": "user"}]}',
            422,
            "messages.0.content",
        ),
    ],
)
def test_malformed_or_incomplete_json_gets_openais_error_shape(client, body, status, param):
    response = client.post(
        "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )

    assert response.status_code == status
    error = openai_error(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    if status == 400:
        assert "JSON" in error["message"]


def test_an_unknown_route_gets_openais_error_shape(client):
    response = client.get("/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})

    assert response.status_code == 404
    assert "/v1/nothing" in openai_error(response)["message"]
