"""An OpenAI-compatible provider on loopback that fails on purpose, for tests and benchmarks.

It serves ``/v1/chat/completions`` and ``/v1/embeddings`` from a real HTTP server in a thread on
127.0.0.1 (an ephemeral port), so the gateway's client, retries and breakers are exercised over
real sockets. Faults come from a script (one per request, in order) and then from seeded random
rates: ``429`` (with ``Retry-After``), ``500``, ``503``, ``timeout`` (the reply is held longer
than the client waits) and ``spike`` (a slow but successful reply), and the refusals of a bad or
revoked key: ``401`` (unauthorized) and ``403`` (forbidden: the key may not use the model), with
OpenAI's error body (``rates={"401": 1.0}`` refuses every request). Every request is counted.
"""

import contextlib
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from resources.llm.embeddings import HashingEmbedder
from resources.llm.text import approximate_tokens

_EMBEDDER = HashingEmbedder(dimensions=256)
# OpenAI's error code for each refusal of the credentials.
_REFUSALS = {"401": "invalid_api_key", "403": "model_not_allowed"}


class LoopbackProvider:
    """A fault-injecting OpenAI-compatible server; use as a context manager.

    Args:
        name: Shown in the answers, so a test can tell providers apart.
        script: Faults for the first requests, in order ("ok" for a normal reply).
        rates: Probability of each fault for requests after the script, e.g. ``{"429": 0.1}``.
        hold_seconds: How long a ``timeout`` fault holds its reply.
        spike_seconds: Extra latency of a ``spike``.
        latency_seconds: Latency of every normal reply (a remote model is not instant).
        retry_after: ``Retry-After`` seconds sent with 429s (None: no header).
        seed: Seed of the fault draws.
    """

    def __init__(
        self,
        name: str = "loopback",
        script: Iterable[str] = (),
        rates: dict[str, float] | None = None,
        hold_seconds: float = 1.0,
        spike_seconds: float = 0.05,
        latency_seconds: float = 0.0,
        retry_after: float | None = None,
        seed: int = 0,
    ):
        self.name = name
        self.script: deque[str] = deque(script)
        self.rates = rates or {}
        self.hold_seconds = hold_seconds
        self.spike_seconds = spike_seconds
        self.latency_seconds = latency_seconds
        self.retry_after = retry_after
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll interval: shutdown waits for it, and tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The API root to give a client."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "LoopbackProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> int:
        """Requests received so far, whatever their fate."""
        with self._lock:
            return sum(self.counts.values())

    def _next_fault(self) -> str:
        with self._lock:
            if self.script:
                fault = self.script.popleft()
            else:
                draw, fault = self.random.random(), "ok"
                for name, rate in self.rates.items():
                    if draw < rate:
                        fault = name
                        break
                    draw -= rate
            self.counts[fault] += 1
            return fault

    def _reply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/embeddings"):
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = _EMBEDDER.embed(texts)  # deterministic, so retrieval over it works
            data = [
                {"object": "embedding", "index": i, "embedding": vector.tolist()}
                for i, vector in enumerate(vectors)
            ]
            tokens = sum(approximate_tokens(t) for t in texts)
            return {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        prompt = "".join(m["content"] for m in body["messages"])
        answer = f"[{self.name}:{body['model']}] " + body["messages"][-1]["content"]
        usage = {"prompt_tokens": approximate_tokens(prompt), "completion_tokens": 50}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": f"chatcmpl-{self.name}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read counts, not logs."""

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                # The client may have given up (a timeout fault): nothing left to do then.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fault = provider._next_fault()
                if fault in ("429", "500", "503"):
                    headers = {}
                    if fault == "429" and provider.retry_after is not None:
                        headers["Retry-After"] = f"{provider.retry_after:g}"
                    error = {"message": f"injected {fault}", "type": "injected", "code": fault}
                    self._send(int(fault), {"error": error}, headers)
                    return
                if fault in _REFUSALS:
                    code = _REFUSALS[fault]
                    error = {"message": f"refused: {code}", "type": "invalid_request_error"}
                    self._send(int(fault), {"error": {**error, "code": code}}, {})
                    return
                if fault == "timeout":
                    time.sleep(provider.hold_seconds)
                elif fault == "spike":
                    time.sleep(provider.spike_seconds)
                time.sleep(provider.latency_seconds)
                self._send(200, provider._reply(self.path, body), {})

        return Handler
