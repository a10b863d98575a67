"""Evaluation of every prompt version on the golden set, and the gate a candidate must pass.

``llm_eval_report`` answers each golden question through the gateway's own request path with
the production and the candidate prompt (``golden_set.py`` measures the answers). It runs by
declarative automation whenever the recorded prompts or the index change. Its blocking
``candidate_gate`` check fails when the candidate is worse than production on correctness or
recall, or below the correctness floor; ``prompt_release`` then does not run, and the gateway
gives the candidate no traffic.
"""

from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.keys import PROMPT_REGISTRY, RAG_INDEX
from platform_assets.common.markdown import to_markdown
from platform_assets.llm.golden_set import evaluate_prompt, load_golden, prompt_gate
from resources.clock import Clock
from resources.environments import PROJECT_ROOT
from resources.llm.cache import SemanticCache
from resources.llm.embeddings import Embedder
from resources.llm.gateway import Gateway
from resources.llm.ledger import LLMLedger
from resources.llm.prompts import PromptRegistry, PromptVersion
from resources.llm.providers import LLMProviders
from resources.llm.rag import VectorIndex

CANDIDATE_GATE = "candidate_gate"
SUMMARY_COLUMNS = (
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


@asset(
    deps=[PROMPT_REGISTRY, RAG_INDEX],
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
    **catalog(LLM),
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
    recorded = prompts.current()
    if not recorded:
        raise ValueError(
            f"no prompt version recorded in {prompts.store_dir}: materialize prompt_registry"
        )
    ledger = llm_ledger.open()
    # The request path that is served, with a cache that never hits: every answer is fresh.
    no_cache = SemanticCache(threshold=1.0, ttl_seconds=0.0)
    chain = llm_providers.build_chain()
    gateway = Gateway(prompts, vector_index, embedder, chain, ledger, no_cache)
    summaries, details, verdicts = [], [], []
    try:
        for use_case, labels in sorted(recorded.items()):
            verdict, summary, answers = _evaluate_use_case(
                gateway, use_case, labels, config, vector_index, clock
            )
            prompts.record_evaluation(verdict)
            verdicts.append(verdict)
            summaries += summary
            details += answers
    finally:
        ledger.close()
    failures = [f"{v['use_case']}: {rule}" for v in verdicts for rule in v["broken_rules"]]
    description = (
        "; ".join(failures) if failures else "Every candidate is at least as good as production."
    )
    context.log.info(description)
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(
                to_markdown(pl.DataFrame(summaries).select(SUMMARY_COLUMNS))
            ),
            "answers": MetadataValue.md(to_markdown(pl.concat(details), limit=60)),
            "index_version": MetadataValue.text(str(vector_index.version())),
            "evaluated_at": MetadataValue.text(clock.now().isoformat()),
        },
        check_results=[_gate_result(failures, verdicts, description)],
    )


def _gate_result(
    failures: list[str], verdicts: list[dict[str, Any]], description: str
) -> AssetCheckResult:
    """The blocking ``candidate_gate``: fails on any broken rule of any use case."""
    return AssetCheckResult(
        check_name=CANDIDATE_GATE,
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "broken_rules": MetadataValue.json(failures),
            "verdicts": MetadataValue.json(verdicts),
        },
    )


def _evaluate_use_case(
    gateway: Gateway,
    use_case: str,
    labels: dict[str, PromptVersion],
    config: LLMEvalConfig,
    vector_index: VectorIndex,
    clock: Clock,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[pl.DataFrame]]:
    """Every prompt of ``use_case`` on its golden set: the verdict, summaries and answers."""
    golden = load_golden(config.golden_dir, use_case)
    figures, summaries, answers = {}, [], []
    for label, prompt in sorted(labels.items()):
        figures[label], frame = evaluate_prompt(gateway, prompt, golden)
        summary = {"use_case": use_case, "label": label, "version": prompt.version}
        summaries.append({**summary, **figures[label]})
        answers.append(frame.select(pl.lit(label).alias("label"), pl.all()))
    broken = prompt_gate(
        figures["production"], figures.get("candidate"), config.min_correctness, config.tolerance
    )
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
    return verdict, summaries, answers
