"""Benchmark of the LLM gateway, side by side with calling the provider directly.

What is measured, and why:

* **Gateway overhead.** The same OpenAI-compatible provider (a loopback server answering after a
  fixed model latency) is called (a) directly with the official ``openai`` SDK and (b) through
  the gateway over HTTP with the same SDK, the cache off (TTL 0) so every request does the full
  path: sticky split, question embedding, cache lookup, LanceDB retrieval, prompt rendering,
  provider call, ledger write. Overhead = gateway latency - direct latency, at p50 and p99.
* **Cache hit latency.** The same question asked again through the gateway (HTTP, end to end),
  and the in-process cache lookup alone.
* **Cost saved on a repeated-question workload.** Analysts ask the golden questions again and
  again, some in paraphrase (the labelled paraphrase set), with a popularity skew (Zipf, s=1.1).
  The workload runs through the gateway with and without the cache; cost comes from the ledger
  at gpt-4o-mini list prices (the provider reports token usage like the real one).

Run from the project root: ``.venv/bin/python bench/llm_gateway.py`` (about a minute; ``--quick``
for a smoke run). Tables go to stdout, and the last line of stdout is one JSON object.
"""

import argparse
import datetime
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import uvicorn
from helpers.timing import percentiles, timed

from resources.environments import PROJECT_ROOT
from resources.llm.cache import load_pairs
from resources.llm.environments import llm_resources
from resources.llm.gateway import PARAPHRASE_SET, Gateway, GatewaySettings, build_gateway
from resources.llm.providers import LLMProviders, ProviderConfig
from serving.llm.app import create_app
from serving.llm.loopback import LoopbackProvider

USE_CASE = "fraud_ops_assistant"
MODEL_LATENCY_SECONDS = 0.02


class Served:
    """A gateway served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, gateway: Gateway):
        config = uvicorn.Config(
            create_app(gateway, [USE_CASE]), host="127.0.0.1", port=0, log_level="error"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def gateway_for(root: Path, provider_url: str, ttl: float) -> Gateway:
    """A local gateway whose primary provider is the loopback model, with a fresh index."""
    resources = llm_resources("local", root, PROJECT_ROOT)
    resources["llm_providers"] = LLMProviders(
        providers=[
            ProviderConfig(
                name="loopback", base_url=provider_url, api_key="bench", models=["gpt-4o-mini"]
            )
        ]
    )
    r = SimpleNamespace(**resources)
    r.vector_index.sync(r.corpus.documents(), r.embedder, datetime.datetime.now(datetime.UTC))
    return build_gateway(r, GatewaySettings(cache_ttl_seconds=ttl, reload_seconds=1.0))


def workload(count: int, seed: int) -> list[str]:
    """Repeated questions with a Zipf skew; a third of the repeats come as paraphrases."""
    golden = [
        json.loads(line)["question"]
        for line in (PROJECT_ROOT / "serving/evals/fraud_ops_assistant.golden.jsonl")
        .read_text()
        .splitlines()
    ]
    paraphrases: dict[str, list[str]] = {}
    for pair in load_pairs(PARAPHRASE_SET):
        if pair["same"]:
            paraphrases.setdefault(pair["a"], []).append(pair["b"])
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(golden))]
    asked = []
    for _ in range(count):
        question = rng.choices(golden, weights)[0]
        if question in paraphrases and rng.random() < 1 / 3:
            question = rng.choice(paraphrases[question])
        asked.append(question)
    return asked


def run(count: int) -> dict[str, Any]:
    """Every measurement; prints the tables and returns the figures."""
    question = "Who must approve refunds over 500 euros?"
    messages = [{"role": "user", "content": question}]
    figures: dict[str, Any] = {"requests": count, "model_latency_ms": MODEL_LATENCY_SECONDS * 1000}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LoopbackProvider("model", latency_seconds=MODEL_LATENCY_SECONDS) as model,
    ):
        direct = openai.OpenAI(base_url=model.base_url, api_key="bench", max_retries=0)
        direct_times = timed(
            lambda n: direct.chat.completions.create(model="gpt-4o-mini", messages=messages),
            count,
        )

        def through(gateway: Gateway) -> list[float]:
            """The same question ``count`` times through ``gateway`` served over HTTP."""
            with Served(gateway) as url:
                client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)
                return timed(
                    lambda n: client.chat.completions.create(
                        model=USE_CASE, messages=messages, user=f"user-{n}"
                    ),
                    count,
                )

        gateway_times = through(gateway_for(Path(tmp, "miss"), model.base_url, ttl=0.0))
        cached = gateway_for(Path(tmp, "hit"), model.base_url, ttl=3600.0)
        hit_times = through(cached)
        vector = cached.embedder.embed([question])[0]
        scope = (USE_CASE, cached.served(USE_CASE)[0].version, str(cached.index.version()))
        if cached.cache.lookup(scope, question, vector) is None:
            raise RuntimeError("the cache lookup benchmark would time a miss")
        lookup_times = timed(lambda n: cached.cache.lookup(scope, question, vector), count)
        embed_times = timed(lambda n: cached.embedder.embed([question]), count)

        asked = workload(count, seed=7)
        spent = {}
        for label, ttl in (("without_cache", 0.0), ("with_cache", 3600.0)):
            gateway = gateway_for(Path(tmp, f"work-{label}"), model.base_url, ttl=ttl)
            for n, text in enumerate(asked):
                gateway.answer(text, USE_CASE, f"analyst-{n % 40}")
            calls = gateway.ledger.calls()
            spent[label] = {
                "cost_usd": float(calls["cost_usd"].sum()),
                "hits": int(calls["cache_hit"].sum()),
                "provider_calls": int((calls["cache_hit"] == 0).sum()),
            }

    d, g, h, lk, em = map(
        percentiles, (direct_times, gateway_times, hit_times, lookup_times, embed_times)
    )
    print(
        f"\nLLM gateway vs direct provider call ({count} requests each, model latency "
        f"{MODEL_LATENCY_SECONDS * 1000:.0f} ms, loopback HTTP, openai SDK)\n"
    )
    print(f"{'path':<44}{'p50 ms':>10}{'p99 ms':>10}")
    rows = [
        ("direct provider call (peer)", d),
        ("gateway, cache miss (full path)", g),
        ("gateway, cache hit (HTTP end to end)", h),
        ("question embedding alone (hashing, 1024-d)", em),
        ("cache lookup alone (in process)", lk),
    ]
    for name, p in rows:
        print(f"{name:<44}{p['p50_ms']:>10.2f}{p['p99_ms']:>10.2f}")
    overhead = {"p50_ms": g["p50_ms"] - d["p50_ms"], "p99_ms": g["p99_ms"] - d["p99_ms"]}
    print(
        f"{'gateway overhead (miss - direct)':<44}{overhead['p50_ms']:>10.2f}"
        f"{overhead['p99_ms']:>10.2f}"
    )
    without, with_cache = spent["without_cache"], spent["with_cache"]
    saved = without["cost_usd"] - with_cache["cost_usd"]
    share = saved / without["cost_usd"] if without["cost_usd"] else 0.0
    print(
        f"\nRepeated-question workload: {count} questions over "
        f"{len(set(asked))} distinct texts (Zipf s=1.1, a third of repeats paraphrased)\n"
    )
    print(f"{'':<16}{'provider calls':>16}{'cache hits':>12}{'cost USD':>14}")
    for label, figures_ in spent.items():
        print(
            f"{label:<16}{figures_['provider_calls']:>16}{figures_['hits']:>12}"
            f"{figures_['cost_usd']:>14.6f}"
        )
    print(f"cost saved by the cache: ${saved:.6f} ({share:.1%})")
    figures.update(
        direct=d,
        gateway_miss=g,
        gateway_hit=h,
        cache_lookup=lk,
        embedding=em,
        overhead=overhead,
        workload={
            **spent,
            "saved_usd": saved,
            "saved_share": share,
            "distinct_texts": len(set(asked)),
        },
        hit_vs_direct_p50_speedup=d["p50_ms"] / h["p50_ms"],
    )
    return figures


def main() -> None:
    """Parse the flags, run, print one JSON line last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 requests instead of 400")
    args = parser.parse_args()
    figures = run(60 if args.quick else 400)
    sys.stdout.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
