"""What the gateway serves: each use case's production prompt and its approved candidate.

Runs after a passing ``llm_eval_report`` (its blocking check stops it otherwise) and checks the
verdict again, so no path releases an unevaluated candidate, nor a production prompt that failed
its evaluation (below the correctness floor, or judged on a fallback's answers).
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
    code_version="2",
    automation_condition=(
        AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
    ),
    **catalog(LLM),
)
def prompt_release(
    context, config: ReleaseConfig, prompts: PromptRegistry, clock: Clock
) -> MaterializeResult:
    """What the gateway serves: each use case's production prompt and approved candidate.

    A candidate is approved only by a passing evaluation of exactly these two versions, and a
    production prompt only by an evaluation of it that it passed; a use case whose production
    did not pass keeps its last release unchanged. The blocking gate keeps this asset from
    running after a failing evaluation, and the verdict is checked again here so that no path
    releases an unevaluated or failed prompt.
    """
    previous, release, rows = prompts.release(), {}, []
    for use_case, labels in sorted(prompts.current().items()):
        verdict = prompts.latest_evaluation(use_case) or {}
        production = labels["production"].version
        # Verdicts written before production was judged on its own say only "passed".
        production_passed = verdict.get("production") == production and bool(
            verdict.get("production_passed", verdict.get("passed"))
        )
        candidate = labels.get("candidate")
        approved = bool(
            production_passed
            and candidate
            and verdict.get("passed")
            and verdict.get("candidate") == candidate.version
        )
        if production_passed:
            release[use_case] = {
                "production": production,
                "candidate": candidate.version if candidate and approved else None,
                "candidate_share": config.candidate_share if approved else 0.0,
                "released_at": clock.now().isoformat(),
            }
        elif use_case in previous:
            release[use_case] = previous[use_case]
        # else: never released, and production did not pass: the gateway serves the files'
        # production prompt as before any release (there is nothing evaluated to serve).
        served = release.get(use_case, {})
        rows.append(
            {
                "use_case": use_case,
                "production": served.get("production"),
                "candidate": served.get("candidate"),
                "candidate_share": served.get("candidate_share", 0.0),
                "released_at": served.get("released_at"),
                "approved": approved,
                "production_file": production,
                "production_passed": production_passed,
            }
        )
    prompts.write_release(release)
    context.log.info(f"released {json.dumps(release)}")
    return MaterializeResult(
        metadata={
            "release": MetadataValue.md(to_markdown(pl.DataFrame(rows))),
            "released_at": MetadataValue.text(clock.now().isoformat()),
        }
    )
