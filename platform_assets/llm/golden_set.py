"""A prompt version answered on the golden set, and the rules a candidate must pass (no Dagster).

Each golden question is answered through the gateway's own request path (no cache). Retrieval
is measured by recall@k (did the expected documents come back) and hit@1 (was one of them
first), the answer by correctness (does it state every required fact: a deterministic
substring check), and the call by latency and cost.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from resources.llm.gateway import Gateway
from resources.llm.prompts import PromptVersion

EVAL_ENDPOINT = "eval"


def load_golden(golden_dir: str, use_case: str) -> list[dict[str, Any]]:
    """The golden questions of ``use_case``: question, required facts, expected documents."""
    path = Path(golden_dir, f"{use_case}.golden.jsonl")
    if not path.exists():
        raise FileNotFoundError(f"no golden set for use case {use_case!r}: {path} is missing")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    for number, row in enumerate(rows, 1):
        for key in ("question", "facts", "docs"):
            if not row.get(key):
                raise ValueError(f"{path} line {number}: field '{key}' is required")
    return rows


def evaluate_prompt(
    gateway: Gateway, prompt: PromptVersion, golden: list[dict[str, Any]]
) -> tuple[dict[str, float], pl.DataFrame]:
    """Answer the golden set with ``prompt``: summary figures and one row per question."""
    rows = []
    for item in golden:
        answer = gateway.answer(
            item["question"], prompt.use_case, "eval", EVAL_ENDPOINT, prompt, use_cache=False
        )
        text = answer.text.lower()
        found = [doc for doc in item["docs"] if doc in answer.sources]
        rows.append(
            {
                "question": item["question"],
                "correct": all(fact.lower() in text for fact in item["facts"]),
                "recall": len(found) / len(item["docs"]),
                "top_hit": bool(answer.sources) and answer.sources[0] in item["docs"],
                "latency_ms": answer.latency_ms,
                "cost_usd": answer.cost_usd,
                "model": answer.model,
                "answer": answer.text[:160],
            }
        )
    latencies = [row["latency_ms"] for row in rows]
    summary = {
        "correctness": sum(row["correct"] for row in rows) / len(rows),
        "recall_at_k": sum(row["recall"] for row in rows) / len(rows),
        "hit_at_1": sum(row["top_hit"] for row in rows) / len(rows),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "cost_usd": sum(row["cost_usd"] for row in rows),
        "questions": float(len(rows)),
    }
    return summary, pl.DataFrame(rows)


def prompt_gate(
    production: dict[str, float],
    candidate: dict[str, float] | None,
    min_correctness: float,
    tolerance: float,
) -> list[str]:
    """The rules a candidate breaks (empty: it may be released).

    Args:
        production: The production prompt's figures on the golden set.
        candidate: The candidate's, or None when the use case has no candidate.
        min_correctness: Share of golden answers a candidate must get right.
        tolerance: How far below production a candidate's correctness or recall may fall.
    """
    if candidate is None:
        return []
    broken = []
    if candidate["correctness"] < min_correctness:
        broken.append(
            f"correctness {candidate['correctness']:.2f} is below the floor {min_correctness:.2f}"
        )
    for metric in ("correctness", "recall_at_k"):
        if candidate[metric] < production[metric] - tolerance:
            broken.append(
                f"{metric} {candidate[metric]:.2f} is worse than production's "
                f"{production[metric]:.2f}"
            )
    return broken
