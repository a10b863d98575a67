"""The gateway over HTTP: OpenAI-compatible ``/v1/chat/completions``, plus models and feedback.

``model`` in a chat request names the use case (as ``/v1/models`` lists them); ``user`` is the
A/B split key. The response is an OpenAI ``chat.completion`` with a ``flywheel`` object added
(variant, prompt and index versions, provider, cost, cache hit, sources, attempts). Outcomes
for the A/B analysis come back through ``POST /v1/feedback``.

Every ``/v1`` route needs an API key, OpenAI-style (``Authorization: Bearer <key>``), one per use
case, set in ``FLYWHEEL_LLM_KEY_<USE_CASE>`` or, hashed, ``FLYWHEEL_LLM_KEY_SHA256_<USE_CASE>``
(``resources/llm/keys.py``). In ``local`` a use case without a key takes the development key
``flywheel-local-dev-key``, on loopback only; ``prod`` does not start without every use case's
key. ``/healthz`` is open. Every error, a refused key and a malformed body too, comes in
OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

A request is capped by ``GatewaySettings``: a body over ``max_body_bytes`` (64 KiB) is a 413;
more than ``max_messages`` (32) messages, a message over ``max_message_chars`` (8 000) or more
than ``max_prompt_tokens`` (4 000, about 4 characters a token) over all messages is a 422 naming
the field and the limit. ``--set FIELD=VALUE`` changes any of them.

When the embedder is down the answer is degraded, not an error: no semantic cache, passages
by keyword search, and the headers ``X-Flywheel-Degraded: embeddings`` and
``X-Flywheel-Cache: bypass`` (``flywheel.degraded`` in the body).

The daily budgets of ``LLMLedger`` are hard here: once a use case's (or the total) spend of the
UTC day reaches ``hard_limit_fraction`` of its budget, its new questions get a 429 with code
``budget_exceeded`` and ``Retry-After`` (the end of the UTC day); cached answers still come.

Run it (local, with the development key)::

    .venv/bin/python -m serving.llm.app --port 8700
"""

import argparse
import contextlib
import ipaddress
import logging
import time
from dataclasses import asdict
from typing import Any

import uvicorn
from dagster import build_resources as initialize
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resources.environments import build_resources, current_environment
from resources.llm.budget import BudgetExceeded
from resources.llm.gateway import Gateway, GatewayAnswer, GatewaySettings, build_gateway
from resources.llm.keys import DEV_KEY, HASH_VARIABLE, KEY_VARIABLE, ApiKeys, variable_suffix
from resources.llm.providers import AllProvidersFailed
from resources.llm.rag import IndexNotBuilt
from resources.llm.text import approximate_tokens

log = logging.getLogger("serving.llm.app")
# The ASGI scope key under which the key check leaves the use cases the caller's key opens.
OPENED = "flywheel.use_cases"


class OpenAIError(HTTPException):
    """An error the client receives in OpenAI's shape.

    Args:
        status_code: The HTTP status.
        message: What went wrong and what to do, for a person.
        type: OpenAI's error type (``invalid_request_error``, ``insufficient_quota``, ...).
        param: The request field at fault, dotted (``messages.2.content``), or None.
        code: A stable machine-readable code (``invalid_api_key``, ``budget_exceeded``, ...).
        headers: Extra response headers (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status_code, message, headers)
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def response(self) -> JSONResponse:
        """The error as a response."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, self.status_code, dict(self.headers or {}))


class KeyCheck:
    """ASGI middleware: every ``/v1`` request needs a key, checked before its body is read.

    The use cases the key opens go into the scope (``OPENED``) for the routes; a missing or
    unknown key is a 401 with ``WWW-Authenticate: Bearer``.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key of a ``/v1`` request, then pass it on."""
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        opened = self.keys.use_cases(key.strip()) if scheme.lower() == "bearer" else frozenset()
        if not opened:
            await self._refuse(scheme, scope, receive, send)
            return
        scope[OPENED] = opened
        await self.app(scope, receive, send)

    async def _refuse(self, scheme: str, scope: Scope, receive: Receive, send: Send) -> None:
        hint = (
            f" Locally, a use case without its own key takes the development key {DEV_KEY!r}."
            if self.keys.development
            else ""
        )
        if not scheme:
            message = (
                "Missing API key: send your use case's key as 'Authorization: Bearer <key>' "
                f"(on the gateway it is {KEY_VARIABLE.format('<USE_CASE>')})." + hint
            )
            code = "missing_api_key"
        else:
            message = (
                "Incorrect API key: the 'Authorization: Bearer <key>' header holds no key of "
                "this gateway's use cases." + hint
            )
            code = "invalid_api_key"
        error = OpenAIError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, before it is parsed.

    A declared ``Content-Length`` is refused at once; a body without one (chunked) is counted
    as it arrives and refused as soon as it passes the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def error(self, size: str) -> OpenAIError:
        """The 413, naming the cap and the setting."""
        return OpenAIError(
            413,
            f"The request body is {size} bytes; the gateway takes at most {self.max_bytes} "
            "bytes (GatewaySettings.max_body_bytes).",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize body, or count an undeclared one as it is read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self.error(declared).response()(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException: FastAPI passes it to the app's handler, which answers.
                    raise self.error(f"more than {self.max_bytes}")
            return message

        await self.app(scope, counted, send)


def check_exposure(host: str, keys: ApiKeys) -> None:
    """Refuse to listen beyond loopback while a use case is open to the development key."""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):  # a host name, not an address
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if keys.development and not loopback:
        variables = ", ".join(KEY_VARIABLE.format(variable_suffix(u)) for u in keys.development)
        raise SystemExit(
            f"refusing to serve on {host}: use case(s) {', '.join(sorted(keys.development))} "
            f"take the development key; set {variables} (or {HASH_VARIABLE.format('<USE_CASE>')}) "
            "or listen on 127.0.0.1"
        )


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


def opened_by(request: Request) -> list[str]:
    """The use cases the caller's key opens (``KeyCheck`` put them in the scope)."""
    return sorted(request.scope[OPENED])


def check_caps(messages: list[ChatMessage], settings: GatewaySettings) -> None:
    """422 for too many messages, a message too long, or too many tokens over all of them."""
    if len(messages) > settings.max_messages:
        raise OpenAIError(
            422,
            f"messages: {len(messages)} messages; the gateway takes at most "
            f"{settings.max_messages} messages (GatewaySettings.max_messages).",
            param="messages",
            code="too_many_messages",
        )
    for position, message in enumerate(messages):
        if len(message.content) > settings.max_message_chars:
            raise OpenAIError(
                422,
                f"messages.{position}.content: {len(message.content)} characters; the gateway "
                f"takes at most {settings.max_message_chars} characters a message "
                "(GatewaySettings.max_message_chars).",
                param=f"messages.{position}.content",
                code="message_too_long",
            )
    tokens = sum(approximate_tokens(message.content) for message in messages)
    if tokens > settings.max_prompt_tokens:
        raise OpenAIError(
            422,
            f"messages: about {tokens} tokens; the gateway takes at most "
            f"{settings.max_prompt_tokens} tokens over all messages "
            "(GatewaySettings.max_prompt_tokens, 4 characters a token).",
            param="messages",
            code="context_length_exceeded",
        )


def create_app(
    gateway: Gateway,
    use_cases: list[str],
    keys: ApiKeys,
    settings: GatewaySettings | None = None,
) -> FastAPI:
    """The HTTP face of ``gateway``: OpenAI-compatible chat, models, feedback, health.

    Args:
        gateway: The request path.
        use_cases: What ``model`` may name.
        keys: The callers' API keys (``ApiKeys.from_environment`` in ``main``).
        settings: The caps on a request (``max_body_bytes``, ``max_messages``, ...); the
            defaults of ``GatewaySettings`` when None.
    """
    settings = settings or GatewaySettings()
    app = FastAPI(title="Flywheel LLM gateway")
    # The last added runs first: the key is checked before the body is counted or read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(KeyCheck, keys=keys)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Errors in OpenAI's shape, so OpenAI clients show the message."""
        if isinstance(error, OpenAIError):
            return error.response()
        message = str(error.detail)
        if error.status_code in (404, 405):
            message = f"{message}: {request.method} {request.url.path}"
        headers = dict(error.headers or {})
        return OpenAIError(error.status_code, message, headers=headers).response()

    @app.exception_handler(RequestValidationError)
    def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        """A body that is not JSON is a 400; JSON of the wrong shape a 422 naming the field."""
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error", "")
            message = (
                f"The request body is not valid JSON ({reason} at character {first['loc'][-1]})."
            )
            return OpenAIError(400, message, code="invalid_json").response()
        where = [str(part) for part in first["loc"] if part != "body"]
        param = ".".join(where) or None
        message = f"{param or 'body'}: {first['msg']}"
        return OpenAIError(422, message, param=param, code="invalid_value").response()

    @app.exception_handler(Exception)
    def internal_error(request: Request, error: Exception) -> JSONResponse:
        """A bug or an unexpected outage: still OpenAI's shape (the traceback goes to the log)."""
        message = f"The gateway failed on this request ({type(error).__name__}); see its log."
        return OpenAIError(500, message, type="server_error", code="internal_error").response()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": u, "object": "model", "owned_by": "flywheel"}
                for u in opened_by(request)
                if u in use_cases
            ],
        }

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest, response: Response, http: Request) -> dict[str, Any]:
        opened = opened_by(http)
        if request.model not in use_cases or request.model not in opened:
            if request.model in use_cases:
                raise OpenAIError(
                    403,
                    f"This API key does not open the use case {request.model!r}; it opens "
                    f"{opened}.",
                    param="model",
                    code="model_not_allowed",
                )
            raise OpenAIError(
                404,
                f"model (use case) {request.model!r}: one of {opened}",
                param="model",
                code="model_not_found",
            )
        if request.stream:
            raise OpenAIError(
                400,
                "stream: streaming is not supported; send stream=false",
                param="stream",
                code="unsupported_value",
            )
        check_caps(request.messages, settings)
        questions = [m.content for m in request.messages if m.role == "user"]
        if not questions:
            raise OpenAIError(
                422,
                "messages: at least one message with role 'user' is needed",
                param="messages",
                code="invalid_value",
            )
        try:
            result = gateway.answer(questions[-1], request.model, request.user or "anonymous")
        except (AllProvidersFailed, IndexNotBuilt) as error:
            raise OpenAIError(503, str(error), type="server_error", code="unavailable") from error
        except BudgetExceeded as error:
            raise OpenAIError(
                429,
                str(error),
                type="insufficient_quota",
                code="budget_exceeded",
                headers={"Retry-After": str(error.retry_after_seconds)},
            ) from error
        cache = "hit" if result.cache_hit else "bypass" if result.degraded else "miss"
        response.headers["x-flywheel-cache"] = cache
        response.headers["x-flywheel-variant"] = result.variant
        if result.degraded:
            response.headers["x-flywheel-degraded"] = ",".join(result.degraded)
        return chat_completion(result)

    @app.post("/v1/feedback")
    def feedback(body: Feedback, http: Request) -> dict[str, str]:
        call = gateway.ledger.find_call(body.request_id)
        # Only answers served over this API (not the evaluation's), to the key's use cases.
        if call is None or call["endpoint"] != "chat" or call["use_case"] not in opened_by(http):
            raise OpenAIError(
                404,
                f"request_id {body.request_id!r} is not an answer served to this key's use cases",
                param="request_id",
                code="request_not_found",
            )
        recorded = gateway.ledger.record_outcome(
            request_id=body.request_id,
            use_case=call["use_case"],
            user_id=call["user_id"],
            variant=call["variant"],
            prompt_version=call["prompt_version"],
            success=int(body.success),
        )
        if not recorded:
            raise OpenAIError(
                409,
                f"request_id {body.request_id!r} has an outcome already; one per request counts",
                param="request_id",
                code="feedback_already_recorded",
            )
        return {"status": "recorded"}

    return app


def main() -> None:
    """Serve the gateway for ``$FLYWHEEL_ENV`` (uvicorn, loopback by default)."""
    parser = argparse.ArgumentParser(description="Flywheel LLM gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--cache-ttl", type=float, default=3600.0, help="seconds")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a GatewaySettings field, e.g. --set max_messages=64 (repeatable)",
    )
    args = parser.parse_args()
    fields = dict(item.split("=", 1) for item in args.set)
    unknown = sorted(set(fields) - set(GatewaySettings.model_fields))
    if unknown:
        known = ", ".join(GatewaySettings.model_fields)
        parser.error(f"--set: no GatewaySettings field {unknown}; one of {known}")
    settings = GatewaySettings(cache_ttl_seconds=args.cache_ttl, **fields)  # pydantic converts
    env = current_environment()
    wanted = ("prompts", "vector_index", "embedder", "llm_providers", "llm_ledger", "alerter")
    definitions = {key: build_resources(env)[key] for key in wanted}
    with initialize(definitions) as resources:
        use_cases = sorted(resources.prompts.read_files())
        keys = ApiKeys.from_environment(use_cases, env)
        check_exposure(args.host, keys)
        if keys.development:
            log.warning(
                "use case(s) %s take the development key %r (no %s set)",
                ", ".join(sorted(keys.development)),
                DEV_KEY,
                KEY_VARIABLE.format("<USE_CASE>"),
            )
        gateway = build_gateway(resources, settings)
        app = create_app(gateway, use_cases, keys, settings)
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
