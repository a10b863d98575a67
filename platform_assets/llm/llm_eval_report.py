"""Evaluation of every prompt version on the golden set, and the gate a candidate must pass.

``llm_eval_report`` answers each golden question through the gateway's own request path with
the production and the candidate prompt (``golden_set.py`` measures the answers). It runs by
declarative automation whenever the recorded prompts or the index change. Its blocking
``candidate_gate`` check fails when either prompt is below the correctness floor, when the
candidate is worse than production on correctness or recall, or when any answer came from a
fallback (another provider answered after the prompt's own failed, so the figures are not the
prompt's on its model); ``prompt_release`` then does not run, and the gateway keeps serving what
it served. A provider refusing its key (401/403) stops the evaluation with an alert.
"""

from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.keys import PROMPT_REGISTRY, RAG_INDEX
from platform_assets.common.markdown import to_markdown
from platform_assets.llm.golden_set import evaluate_prompt, load_golden, prompt_gate
from resources.alerting import Alerter
from resources.clock import Clock
from resources.environments import PROJECT_ROOT
from resources.llm.cache import SemanticCache
from resources.llm.embeddings import Embedder
from resources.llm.gateway import Gateway
from resources.llm.ledger import LLMLedger
from resources.llm.prompts import PromptRegistry, PromptVersion
from resources.llm.providers import LLMProviders, ProviderAuthFailed
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
    "answered_by",
    "fallbacks",
)


class LLMEvalConfig(Config):
    """Where the golden sets are and what a candidate must reach."""

    golden_dir: str = Field(
        default=str(PROJECT_ROOT / "serving/evals"),
        description="Folder of golden sets, one '<use_case>.golden.jsonl' per use case.",
    )
    min_correctness: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Share of golden answers each prompt (production, candidate) must get right.",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        description="How far below production a candidate's correctness or recall may fall.",
    )


@asset(
    deps=[PROMPT_REGISTRY, RAG_INDEX],
    kinds={"python"},
    code_version="2",
    automation_condition=AutomationCondition.eager(),
    check_specs=[
        AssetCheckSpec(
            CANDIDATE_GATE,
            asset="llm_eval_report",
            blocking=True,
            description=(
                "Production and candidate are above the correctness floor, the candidate is at "
                "least as good as production on correctness and recall, and every answer came "
                "from the provider the prompt asked (no fallback)."
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
    alerter: Alerter,
) -> MaterializeResult:
    """Golden-set evaluation of the production and candidate prompts on the current index.

    Reruns on every prompt, model (in the prompt file) or index change; its blocking check
    gates the release. The summary says which provider and model answered each prompt.
    """
    recorded = prompts.current()
    if not recorded:
        raise ValueError(
            f"no prompt version recorded in {prompts.store_location()}: materialize prompt_registry"
        )
    ledger = llm_ledger.open()
    # The request path that is served, with a cache that never hits: every answer is fresh.
    no_cache = SemanticCache(threshold=1.0, ttl_seconds=0.0)
    chain = llm_providers.build_chain(alerter=alerter)
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
    except ProviderAuthFailed as error:
        # The chain alerted; no verdict is recorded, so nothing is released on a bad key.
        raise Failure(
            description=f"evaluation stopped: {error}",
            metadata={
                "provider": MetadataValue.text(error.provider),
                "model": MetadataValue.text(error.model),
                "status": MetadataValue.text(error.status),
            },
        ) from error
    finally:
        ledger.close()
    failures = [f"{v['use_case']}: {rule}" for v in verdicts for rule in v["broken_rules"]]
    description = (
        "; ".join(failures)
        if failures
        else "Every prompt meets the floor on its own provider's answers, and every candidate is "
        "at least as good as production."
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
    """Every prompt of ``use_case`` on its golden set: the verdict, summaries and answers.

    A label's fallback rule comes first: when it is broken the label's figures are not its own.
    """
    golden = load_golden(config.golden_dir, use_case)
    figures, provenance, summaries, answers = {}, {}, [], []
    for label, prompt in sorted(labels.items()):
        figures[label], frame, provenance[label] = evaluate_prompt(gateway, prompt, golden)
        summary = {"use_case": use_case, "label": label, "version": prompt.version}
        who = provenance[label]
        summaries.append(
            {
                **summary,
                **figures[label],
                "answered_by": "; ".join(f"{k}: {n}" for k, n in who.answered_by.most_common()),
                "fallbacks": sum(who.fallbacks.values()),
            }
        )
        answers.append(frame.select(pl.lit(label).alias("label"), pl.all()))
    fallback_rules = [provenance[label].broken_rule(label) for label in sorted(labels)]
    floor_rules = prompt_gate(
        figures["production"], figures.get("candidate"), config.min_correctness, config.tolerance
    )
    broken = [rule for rule in fallback_rules if rule] + floor_rules
    verdict = {
        "at": clock.now().isoformat(),
        "use_case": use_case,
        "production": labels["production"].version,
        "candidate": labels["candidate"].version if "candidate" in labels else None,
        "index_version": vector_index.version(),
        "passed": not broken,
        # What prompt_release needs to release a new production when only the candidate failed.
        "production_passed": not any(rule.startswith("production:") for rule in broken),
        "broken_rules": broken,
        "figures": figures,
        "answered_by": {label: dict(p.answered_by) for label, p in provenance.items()},
        "fallbacks": {label: sum(p.fallbacks.values()) for label, p in provenance.items()},
        "failed_before_fallback": {
            label: {tried: dict(outcomes) for tried, outcomes in p.failed.items()}
            for label, p in provenance.items()
        },
    }
    return verdict, summaries, answers
