"""What the gateway serves: each use case's production prompt and its approved candidate.

Runs after a passing ``llm_eval_report`` (its blocking check stops it otherwise) and checks the
verdict again, so no path releases an unevaluated candidate.
"""

import json

import polars as pl
from dagster import AutomationCondition, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.markdown import to_markdown
from resources.clock import Clock
from resources.llm.prompts import PromptRegistry


class ReleaseConfig(Config):
    """How much traffic an approved candidate gets."""

    candidate_share: float = Field(
        default=0.1, ge=0, le=1, description="Share of users (sticky by user id) on the candidate."
    )


@asset(
    deps=["llm_eval_report"],
    kinds={"json"},
    code_version="1",
    automation_condition=(
        AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
    ),
    **catalog(LLM),
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
