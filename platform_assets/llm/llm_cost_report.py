"""What the LLM gateway costs and how its A/B tests stand, from the gateway's ledger.

``llm_cost_report`` breaks today's spend down per model, endpoint and use case (the model is the
one that answered, after any fallback) and shows what the semantic cache saved. Its
``llm_budget`` check compares each use case's and the total daily spend with the budgets in
``LLMLedger`` and alerts: a warning at ``warn_fraction`` of a budget, an error past it.
``llm_ab_report`` compares the success rate of the released production and candidate prompt
versions per use case (outcomes of other versions are left out) with Newcombe's interval on the
difference, and names a winner only once each arm has ``min_outcomes_per_arm`` outcomes and the
interval excludes zero (``resources/llm/ab.py``).
"""

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
from platform_assets.common.markdown import to_markdown
from platform_assets.llm.spend import TOTAL, budget_status, day_start, spend_by
from resources.alerting import Alerter
from resources.clock import Clock
from resources.llm.ab import MIN_OUTCOMES_PER_ARM, analyse
from resources.llm.ledger import LLMLedger
from resources.llm.prompts import PromptRegistry

BUDGET_CHECK = "llm_budget"
HOURLY = AutomationCondition.on_cron("0 * * * *")


@asset(
    kinds={"sqlite"},
    code_version="1",
    automation_condition=HOURLY,
    check_specs=[
        AssetCheckSpec(
            BUDGET_CHECK,
            asset="llm_cost_report",
            description="Today's LLM spend per use case and in total is within the daily budgets.",
        )
    ],
    **catalog(LLM),
)
def llm_cost_report(
    context, llm_ledger: LLMLedger, clock: Clock, alerter: Alerter
) -> MaterializeResult:
    """Today's LLM spend per model, endpoint and use case, and what the cache saved.

    Refreshed hourly by declarative automation; the budget check alerts on overspend.
    """
    since = day_start(clock.now())
    ledger = llm_ledger.open()
    try:
        calls = ledger.calls(since=since)
    finally:
        ledger.close()
    status = budget_status(calls, llm_ledger.daily_budget_usd, llm_ledger.warn_fraction)
    over = status.filter(pl.col("level") != "ok")
    for row in over.iter_rows(named=True):
        alerter.send(
            title=f"LLM budget {row['budget']} at {row['used']:.0%} on {since[:10]}",
            message=(
                f"Spent ${row['spent_usd']:.4f} of the ${row['budget_usd']:.2f} daily budget "
                f"for {'all use cases' if row['budget'] == TOTAL else row['budget']}."
            ),
            severity=row["level"],
            asset="llm_cost_report",
            check=BUDGET_CHECK,
            budget=row["budget"],
            spent_usd=row["spent_usd"],
        )
    errors = status.filter(pl.col("level") == "error")
    description = (
        "Over budget: " + ", ".join(errors["budget"].to_list())
        if errors.height
        else f"{over.height} budget(s) past the warning line."
        if over.height
        else "Every budget is under its warning line."
    )
    return MaterializeResult(
        metadata={
            "day": MetadataValue.text(since[:10]),
            "calls": MetadataValue.int(calls.height),
            # An empty ledger's sums are 0.0 (a day without calls, e.g. a fresh instance).
            "cost_usd": MetadataValue.float(float(calls["cost_usd"].sum())),
            "saved_by_cache_usd": MetadataValue.float(float(calls["saved_usd"].sum())),
            "by_model": MetadataValue.md(to_markdown(spend_by(calls, "model"))),
            "by_endpoint": MetadataValue.md(to_markdown(spend_by(calls, "endpoint"))),
            "by_use_case": MetadataValue.md(to_markdown(spend_by(calls, "use_case"))),
            "budgets": MetadataValue.md(to_markdown(status)),
        },
        check_results=[
            AssetCheckResult(
                check_name=BUDGET_CHECK,
                passed=over.height == 0,
                severity=AssetCheckSeverity.ERROR if errors.height else AssetCheckSeverity.WARN,
                description=description,
                metadata={"budgets": MetadataValue.md(to_markdown(status))},
            )
        ],
    )


class ABReportConfig(Config):
    """When the A/B analysis may name a winner."""

    min_outcomes_per_arm: int = Field(
        default=MIN_OUTCOMES_PER_ARM,
        ge=1,
        description=(
            "Outcomes each arm (released production and candidate version) needs before a "
            "winner is named; below it the report says 'insufficient sample'. At 100 a rate "
            "near 50 % is known to about +-10 points (95 %); fewer lets a handful of early "
            "users decide the test."
        ),
    )
    confidence: float = Field(
        default=0.95, gt=0, lt=1, description="Two-sided confidence level of the intervals."
    )


@asset(kinds={"sqlite"}, code_version="2", automation_condition=HOURLY, **catalog(LLM))
def llm_ab_report(
    context, config: ABReportConfig, llm_ledger: LLMLedger, prompts: PromptRegistry
) -> MaterializeResult:
    """Released production vs candidate prompt per use case: success rates, difference, CI, winner.

    Outcomes are the users' feedback on gateway answers (POST /v1/feedback), each tagged with
    the variant and prompt version the sticky split gave that user; only the released versions'
    outcomes count, and no winner is named below the minimum sample per arm.
    """
    ledger = llm_ledger.open()
    try:
        outcomes = ledger.outcomes()
    finally:
        ledger.close()
    release = prompts.release()
    rows, results = [], {}
    for use_case in sorted(set(outcomes["use_case"].to_list()) | set(release)):
        served = release.get(use_case, {})
        result = analyse(
            outcomes.filter(pl.col("use_case") == use_case),
            served.get("production"),
            served.get("candidate"),
            min_per_arm=config.min_outcomes_per_arm,
            confidence=config.confidence,
        )
        results[use_case] = result
        low, high = result["ci"] or (None, None)
        production, candidate = result["variants"]["production"], result["variants"]["candidate"]
        rows.append(
            {
                "use_case": use_case,
                "production_version": production["version"],
                "production_n": production["n"],
                "production_rate": production["rate"],
                "candidate_version": candidate["version"],
                "candidate_n": candidate["n"],
                "candidate_rate": candidate["rate"],
                "difference": result["difference"],
                "ci_low": low,
                "ci_high": high,
                "excluded": result["excluded"],
                "winner": result["winner"] or "none",
                "verdict": result["verdict"],
            }
        )
    context.log.info(f"A/B analysis of {outcomes.height} outcomes over {len(rows)} use case(s)")
    return MaterializeResult(
        metadata={
            "outcomes": MetadataValue.int(outcomes.height),
            "min_outcomes_per_arm": MetadataValue.int(config.min_outcomes_per_arm),
            "analysis": MetadataValue.md(to_markdown(pl.DataFrame(rows))),
            "results": MetadataValue.json(results),
        }
    )
