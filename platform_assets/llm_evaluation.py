"""Evaluation of every prompt version on the golden set, and the gate a candidate must pass.

``llm_eval_report`` answers each golden question through the gateway's own request path (no
cache) with the production and the candidate prompt, and measures retrieval recall@k (did the
expected documents come back) and hit@1 (was one of them first), answer correctness (does the
answer state every required fact: a deterministic substring check), latency and cost. It runs
by declarative automation whenever the recorded prompts or the index change. Its blocking
``candidate_gate`` check fails when the candidate is worse than production on correctness or
recall, or below the correctness floor; ``prompt_release`` then does not run, and the gateway
gives the candidate no traffic.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from platform_assets.prompts import llm_asset, prompt_registry
from platform_assets.quality import to_markdown
from platform_assets.rag_index import rag_index
from resources.clock import Clock
from resources.embeddings import Embedder
from resources.environments import PROJECT_ROOT
from resources.llm_ledger import LLMLedger
from resources.llm_providers import LLMProviders
from resources.prompts import PromptRegistry, PromptVersion
from resources.rag import VectorIndex
from serving.llm.cache import SemanticCache
from serving.llm.gateway import Gateway

CANDIDATE_GATE = "candidate_gate"
EVAL_ENDPOINT = "eval"


class LLMEvalConfig(Config):
    """Where the golden sets are and what a candidate must reach."""

    golden_dir: str = Field(
        default=str(PROJECT_ROOT / "serving/evals"),
        description="Folder of golden sets, one '<use_case>.golden.jsonl' per use case.",
    )
    min_correctness: float = Field(
        default=0.8, ge=0, le=1, description="Share of golden answers a candidate must get right."
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="How far below production a candidate's correctness or recall may fall.",
    )


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


def gate(
    production: dict[str, float], candidate: dict[str, float] | None, config: LLMEvalConfig
) -> list[str]:
    """The rules a candidate breaks (empty: it may be released)."""
    if candidate is None:
        return []
    broken = []
    if candidate["correctness"] < config.min_correctness:
        broken.append(
            f"correctness {candidate['correctness']:.2f} is below the floor "
            f"{config.min_correctness:.2f}"
        )
    for metric in ("correctness", "recall_at_k"):
        if candidate[metric] < production[metric] - config.tolerance:
            broken.append(
                f"{metric} {candidate[metric]:.2f} is worse than production's "
                f"{production[metric]:.2f}"
            )
    return broken


@llm_asset(
    deps=[prompt_registry, rag_index],
    kinds={"python"},
    code_version="1",
    automation_condition=AutomationCondition.eager(),
    check_specs=[
        AssetCheckSpec(
            CANDIDATE_GATE,
            asset="llm_eval_report",
            blocking=True,
            description=(
                "The candidate prompt is at least as good as production on answer correctness "
                "and retrieval recall, and above the correctness floor."
            ),
        )
    ],
)
def llm_eval_report(
    context,
    config: LLMEvalConfig,
    prompts: PromptRegistry,
    vector_index: VectorIndex,
    embedder: Embedder,
    llm_providers: LLMProviders,
    llm_ledger: LLMLedger,
    clock: Clock,
) -> MaterializeResult:
    """Golden-set evaluation of the production and candidate prompts on the current index.

    Reruns on every prompt, model (in the prompt file) or index change; its blocking check
    gates the candidate's release.
    """
    ledger = llm_ledger.open()
    gateway = Gateway(
        registry=prompts,
        index=vector_index,
        embedder=embedder,
        chain=llm_providers.build_chain(),
        ledger=ledger,
        cache=SemanticCache(threshold=1.0, ttl_seconds=0.0),
    )
    recorded = prompts.current()
    if not recorded:
        raise ValueError(
            f"no prompt version recorded in {prompts.store_dir}: materialize prompt_registry"
        )
    summaries, details, failures, verdicts = [], [], [], []
    try:
        for use_case, labels in sorted(recorded.items()):
            golden = load_golden(config.golden_dir, use_case)
            figures = {}
            for label, prompt in sorted(labels.items()):
                figures[label], frame = evaluate_prompt(gateway, prompt, golden)
                summaries.append({"use_case": use_case, "label": label, **figures[label]})
                summaries[-1]["version"] = prompt.version
                details.append(frame.select(pl.lit(label).alias("label"), pl.all()))
            broken = gate(figures["production"], figures.get("candidate"), config)
            failures += [f"{use_case}: {rule}" for rule in broken]
            verdict = {
                "at": clock.now().isoformat(),
                "use_case": use_case,
                "production": labels["production"].version,
                "candidate": labels["candidate"].version if "candidate" in labels else None,
                "index_version": vector_index.version(),
                "passed": not broken,
                "broken_rules": broken,
                "figures": figures,
            }
            prompts.record_evaluation(verdict)
            verdicts.append(verdict)
    finally:
        ledger.close()
    summary = pl.DataFrame(summaries).select(
        "use_case",
        "label",
        "version",
        "correctness",
        "recall_at_k",
        "hit_at_1",
        "latency_p50_ms",
        "latency_p95_ms",
        "cost_usd",
        "questions",
    )
    description = (
        "; ".join(failures) if failures else "Every candidate is at least as good as production."
    )
    context.log.info(description)
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(to_markdown(summary)),
            "answers": MetadataValue.md(to_markdown(pl.concat(details), limit=60)),
            "index_version": MetadataValue.text(str(vector_index.version())),
            "evaluated_at": MetadataValue.text(clock.now().isoformat()),
        },
        check_results=[
            AssetCheckResult(
                check_name=CANDIDATE_GATE,
                passed=not failures,
                severity=AssetCheckSeverity.ERROR,
                description=description,
                metadata={
                    "broken_rules": MetadataValue.json(failures),
                    "verdicts": MetadataValue.json(verdicts),
                },
            )
        ],
    )


class ReleaseConfig(Config):
    """How much traffic an approved candidate gets."""

    candidate_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of users (sticky by user id) on the candidate."
    )


@llm_asset(
    deps=[llm_eval_report],
    kinds={"json"},
    code_version="1",
    automation_condition=(
        AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
    ),
)
def prompt_release(
    context, config: ReleaseConfig, prompts: PromptRegistry, clock: Clock
) -> MaterializeResult:
    """What the gateway serves: each use case's production prompt and approved candidate.

    A candidate is approved only by a passing evaluation of exactly these two versions; the
    blocking gate keeps this asset from running after a failing one, and the verdict is
    checked again here so that no path releases an unevaluated candidate.
    """
    release, rows = {}, []
    for use_case, labels in sorted(prompts.current().items()):
        verdict = prompts.latest_evaluation(use_case) or {}
        candidate = labels.get("candidate")
        approved = bool(
            candidate
            and verdict.get("passed")
            and verdict.get("candidate") == candidate.version
            and verdict.get("production") == labels["production"].version
        )
        release[use_case] = {
            "production": labels["production"].version,
            "candidate": candidate.version if candidate and approved else None,
            "candidate_share": config.candidate_share if approved else 0.0,
            "released_at": clock.now().isoformat(),
        }
        rows.append({"use_case": use_case, **release[use_case], "approved": approved})
    prompts.write_release(release)
    context.log.info(f"released {json.dumps(release)}")
    return MaterializeResult(
        metadata={
            "release": MetadataValue.md(to_markdown(pl.DataFrame(rows))),
            "released_at": MetadataValue.text(clock.now().isoformat()),
        }
    )
