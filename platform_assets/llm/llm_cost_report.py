"""What the LLM gateway costs and how its A/B tests stand, from the gateway's ledger.

``llm_cost_report`` breaks today's spend down per model, endpoint and use case (the model is the
one that answered, after any fallback) and shows what the semantic cache saved. Its
``llm_budget`` check compares each use case's and the total daily spend with the budgets in
``LLMLedger`` and alerts: a warning at ``warn_fraction`` of a budget, an error past it.
``llm_ab_report`` compares the success rate of the production and candidate prompts per use case
with a confidence interval and names the winner once the interval excludes zero.
"""

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from platform_assets.common.catalog import LLM, catalog
from platform_assets.common.markdown import to_markdown
from platform_assets.llm.spend import TOTAL, budget_status, day_start, spend_by
from resources.alerting import Alerter
from resources.clock import Clock
from resources.llm.ab import analyse
from resources.llm.ledger import LLMLedger

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


@asset(kinds={"sqlite"}, code_version="1", automation_condition=HOURLY, **catalog(LLM))
def llm_ab_report(context, llm_ledger: LLMLedger) -> MaterializeResult:
    """Production vs candidate prompt per use case: success rates, difference, 95 % CI, winner.

    Outcomes are the users' feedback on gateway answers (POST /v1/feedback), each tagged with
    the variant and prompt version the sticky split gave that user.
    """
    ledger = llm_ledger.open()
    try:
        outcomes = ledger.outcomes()
    finally:
        ledger.close()
    rows = []
    for use_case in sorted(set(outcomes["use_case"].to_list())):
        result = analyse(outcomes.filter(pl.col("use_case") == use_case))
        low, high = result["ci"] or (None, None)
        rows.append(
            {
                "use_case": use_case,
                "production_rate": result["variants"]["production"]["rate"],
                "production_n": result["variants"]["production"]["n"],
                "candidate_rate": result["variants"]["candidate"]["rate"],
                "candidate_n": result["variants"]["candidate"]["n"],
                "difference": result["difference"],
                "ci_low": low,
                "ci_high": high,
                "winner": result["winner"],
            }
        )
    context.log.info(f"A/B analysis of {outcomes.height} outcomes over {len(rows)} use case(s)")
    return MaterializeResult(
        metadata={
            "outcomes": MetadataValue.int(outcomes.height),
            "analysis": MetadataValue.md(to_markdown(pl.DataFrame(rows))),
        }
    )
