"""The gateway over HTTP: OpenAI-compatible ``/v1/chat/completions``, plus models and feedback.

``model`` in a chat request names the use case (as ``/v1/models`` lists them); ``user`` is the
A/B split key. The response is an OpenAI ``chat.completion`` with a ``flywheel`` object added
(variant, prompt and index versions, provider, cost, cache hit, sources, attempts). Outcomes
for the A/B analysis come back through ``POST /v1/feedback``.

Run it (local, no keys needed)::

    .venv/bin/python -m serving.llm.app --port 8700
"""

import argparse
import time
from dataclasses import asdict
from typing import Any

import uvicorn
from dagster import build_resources as initialize
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from resources.environments import build_resources, current_environment
from resources.llm.gateway import Gateway, GatewayAnswer, GatewaySettings, build_gateway
from resources.llm.providers import AllProvidersFailed
from resources.llm.rag import IndexNotBuilt


class ChatMessage(BaseModel):
    """One OpenAI chat message."""

    role: str
    content: str


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat request the gateway reads; ``model`` names the use case."""

    model: str
    messages: list[ChatMessage]
    user: str | None = None
    stream: bool = False


class Feedback(BaseModel):
    """Whether the answer to ``request_id`` solved the user's problem (the A/B outcome)."""

    request_id: str
    success: bool


def chat_completion(result: GatewayAnswer) -> dict[str, Any]:
    """The gateway's answer as an OpenAI ``chat.completion``, with a ``flywheel`` object added."""
    return {
        "id": result.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        "flywheel": {k: v for k, v in asdict(result).items() if k not in ("text", "request_id")},
    }


def create_app(gateway: Gateway, use_cases: list[str]) -> FastAPI:
    """The HTTP face of ``gateway``: OpenAI-compatible chat, models, feedback, health."""
    app = FastAPI(title="Flywheel LLM gateway")

    @app.exception_handler(HTTPException)
    def openai_error(request: Request, error: HTTPException) -> JSONResponse:
        """Errors in OpenAI's shape, so OpenAI clients show the message."""
        body = {"error": {"message": error.detail, "type": "invalid_request_error", "code": None}}
        return JSONResponse(body, status_code=error.status_code)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": u, "object": "model", "owned_by": "flywheel"} for u in use_cases],
        }

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest, response: Response) -> dict[str, Any]:
        if request.model not in use_cases:
            raise HTTPException(404, f"model (use case) {request.model!r}: one of {use_cases}")
        if request.stream:
            raise HTTPException(400, "stream: streaming is not supported; send stream=false")
        questions = [m.content for m in request.messages if m.role == "user"]
        if not questions:
            raise HTTPException(422, "messages: at least one message with role 'user' is needed")
        try:
            result = gateway.answer(questions[-1], request.model, request.user or "anonymous")
        except (AllProvidersFailed, IndexNotBuilt) as error:
            raise HTTPException(503, str(error)) from error
        response.headers["x-flywheel-cache"] = "hit" if result.cache_hit else "miss"
        response.headers["x-flywheel-variant"] = result.variant
        return chat_completion(result)

    @app.post("/v1/feedback")
    def feedback(body: Feedback) -> dict[str, str]:
        call = gateway.ledger.find_call(body.request_id)
        if call is None:
            raise HTTPException(404, f"request_id {body.request_id!r} is not in the ledger")
        gateway.ledger.record_outcome(
            request_id=body.request_id,
            use_case=call["use_case"],
            user_id=call["user_id"],
            variant=call["variant"],
            prompt_version=call["prompt_version"],
            success=int(body.success),
        )
        return {"status": "recorded"}

    return app


def main() -> None:
    """Serve the gateway for ``$FLYWHEEL_ENV`` (uvicorn, loopback by default)."""
    parser = argparse.ArgumentParser(description="Flywheel LLM gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--cache-ttl", type=float, default=3600.0, help="seconds")
    args = parser.parse_args()
    env = current_environment()
    wanted = ("prompts", "vector_index", "embedder", "llm_providers", "llm_ledger")
    definitions = {key: build_resources(env)[key] for key in wanted}
    with initialize(definitions) as resources:
        gateway = build_gateway(resources, GatewaySettings(cache_ttl_seconds=args.cache_ttl))
        use_cases = sorted(resources.prompts.read_files())
        uvicorn.run(create_app(gateway, use_cases), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
