"""LLM spend from the gateway's ledger: totals per key and each daily budget's level, no Dagster."""

import datetime

import polars as pl

# The budget key of all use cases together.
TOTAL = "*"


def day_start(now: datetime.datetime) -> str:
    """The first instant of ``now``'s UTC day, ISO: budgets are per day."""
    return datetime.datetime.combine(now.date(), datetime.time(), tzinfo=datetime.UTC).isoformat()


def spend_by(calls: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Calls, tokens, cost and cache savings grouped by ``keys``, most expensive first."""
    return (
        calls.group_by(*keys)
        .agg(
            pl.len().alias("calls"),
            pl.col("cache_hit").sum().alias("cache_hits"),
            (pl.col("prompt_tokens") + pl.col("completion_tokens")).sum().alias("tokens"),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("saved_usd").sum().alias("saved_usd"),
            pl.col("fallbacks").sum().alias("failed_attempts"),
        )
        .sort("cost_usd", *keys, descending=[True] + [False] * len(keys))
    )


def budget_status(
    calls: pl.DataFrame, budgets: dict[str, float], warn_fraction: float
) -> pl.DataFrame:
    """Spend against each budget (``*`` = all use cases) with a level: ok, warning or error."""
    rows = []
    for scope, budget in sorted(budgets.items()):
        subset = calls if scope == TOTAL else calls.filter(pl.col("use_case") == scope)
        spent = float(subset["cost_usd"].sum()) if subset.height else 0.0
        share = spent / budget if budget > 0 else float("inf") if spent else 0.0
        level = "error" if share >= 1 else "warning" if share >= warn_fraction else "ok"
        rows.append(
            {
                "budget": scope,
                "spent_usd": spent,
                "budget_usd": budget,
                "used": share,
                "level": level,
            }
        )
    return pl.DataFrame(rows)
