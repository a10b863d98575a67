"""A prompt version answered on the golden set, and the rules a candidate must pass (no Dagster).

Each golden question is answered through the gateway's own request path (no cache). Retrieval
is measured by recall@k (did the expected documents come back) and hit@1 (was one of them
first), the answer by correctness (does it state every required fact: a deterministic
substring check), and the call by latency and cost.

The figures judge the prompt on the model it names only if that model answered: every answer
records which provider and model gave it, and an answer given after another provider failed (a
fallback) breaks the gate, whatever its correctness. Production and candidate are held to the
same correctness floor.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from resources.llm.gateway import Gateway, GatewayAnswer
from resources.llm.prompts import PromptVersion

EVAL_ENDPOINT = "eval"


@dataclass
class Provenance:
    """Who answered one prompt's golden questions, and what failed before any fallback."""

    questions: int = 0
    answered_by: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    failed: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, answer: GatewayAnswer) -> list[str]:
        """Count one answer; return the failed tries at other providers before it, if any."""
        who = f"{answer.provider}/{answer.model}"
        self.questions += 1
        self.answered_by[who] += 1
        # Retries on the answering provider are not fallbacks; a try at another one that failed
        # or was cooling down is: the prompt's own deployment did not answer.
        before = [a for a in answer.attempts if a["provider"] != answer.provider]
        if before:
            self.fallbacks[who] += 1
            for attempt in before:
                tried = f"{attempt['provider']}/{attempt['model']}"
                self.failed.setdefault(tried, Counter())[attempt["outcome"]] += 1
        return [f"{a['provider']}/{a['model']}: {a['outcome']}" for a in before]

    def broken_rule(self, label: str) -> str | None:
        """The gate's rule on fallbacks: any fallback answer breaks it, naming who failed how."""
        if not self.fallbacks:
            return None
        failures = " and ".join(
            f"{tried} failed ({_counts(outcomes)})" for tried, outcomes in self.failed.items()
        )
        return (
            f"{label}: {sum(self.fallbacks.values())} of {self.questions} answers came from a "
            f"fallback ({_counts(self.fallbacks)}) after {failures}, so the evaluation did not "
            "judge the prompt's own model; fix the provider and rerun llm_eval_report"
        )


def _counts(counter: Counter[str]) -> str:
    """``a: 3, b: 1``, most frequent first."""
    return ", ".join(f"{key}: {n}" for key, n in counter.most_common())


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
) -> tuple[dict[str, float], pl.DataFrame, Provenance]:
    """Answer the golden set with ``prompt``: figures, one row per question, who answered."""
    rows, provenance = [], Provenance()
    for item in golden:
        answer = gateway.answer(
            item["question"], prompt.use_case, "eval", EVAL_ENDPOINT, prompt, use_cache=False
        )
        failed_before = provenance.add(answer)
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
                "answered_by": f"{answer.provider}/{answer.model}",
                "failed_before": "; ".join(failed_before),
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
    return summary, pl.DataFrame(rows), provenance


def prompt_gate(
    production: dict[str, float],
    candidate: dict[str, float] | None,
    min_correctness: float,
    tolerance: float,
) -> list[str]:
    """The rules the prompts break, each prefixed by the label that breaks it (empty: pass).

    Both prompts are held to the correctness floor; the candidate must also be no worse than
    production on correctness and recall.

    Args:
        production: The production prompt's figures on the golden set.
        candidate: The candidate's, or None when the use case has no candidate.
        min_correctness: Share of golden answers every prompt must get right.
        tolerance: How far below production a candidate's correctness or recall may fall.
    """
    broken = []
    for label, figures in (("production", production), ("candidate", candidate)):
        if figures is not None and figures["correctness"] < min_correctness:
            broken.append(
                f"{label}: correctness {figures['correctness']:.2f} is below the floor "
                f"{min_correctness:.2f}"
            )
    if candidate is None:
        return broken
    for metric in ("correctness", "recall_at_k"):
        if candidate[metric] < production[metric] - tolerance:
            broken.append(
                f"candidate: {metric} {candidate[metric]:.2f} is worse than production's "
                f"{production[metric]:.2f}"
            )
    return broken
