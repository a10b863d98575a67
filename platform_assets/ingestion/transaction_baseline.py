"""The accepted baseline: what "normal" looks like for the ingestion drift gate.

A baseline is never replaced silently. A person chooses the days that define normal and says
why; each acceptance stores a new immutable version (profile plus reference sample) in the lake
and moves the ACCEPTED pointer to it, so every drift verdict names the version it used.
"""

import polars as pl
from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from platform_assets.common.catalog import BASELINES, catalog
from platform_assets.common.keys import RAW_TRANSACTIONS
from platform_assets.common.markdown import to_markdown
from platform_assets.common.partitions import partition_day
from platform_assets.ingestion.contract import split_rows, validate_transactions
from platform_assets.ingestion.drift import build_profile
from resources.lake import Lake
from resources.quality_policy import QualityPolicy

# The lake's name for the accepted baseline of the transactions feed.
BASELINE = "transactions"
# Rows of the accepted days kept as the reference sample for drift reports.
_REFERENCE_SAMPLE_ROWS = 50_000


class BaselineConfig(Config):
    """Which stored days of ``raw_transactions`` define normal, and why."""

    partitions: list[str] = Field(
        description="Days (YYYY-MM-DD) of raw_transactions, already stored, that define normal."
    )
    reason: str = Field(description="Why this baseline is accepted, e.g. 'new market launch'.")


@asset(
    # Its own group: a baseline is accepted by a person, never part of the daily ingestion run.
    kinds={"polars", "json"},
    **catalog(BASELINES),
)
def transaction_baseline(
    context: AssetExecutionContext,
    config: BaselineConfig,
    lake: Lake,
    quality_policy: QualityPolicy,
) -> MaterializeResult:
    """The accepted reference distribution of transactions that the drift gate compares against.

    Materialize it by hand (launchpad config: partitions and reason) to accept a new normal. No
    job or schedule ever accepts one, with one exception: on an empty instance
    ``bootstrap_sensor`` accepts the first ingested days once, tagged ``flywheel/acceptance:
    bootstrap`` and shown as ``accepted_by`` in the metadata.
    """
    if not config.partitions:
        raise ValueError("BaselineConfig.partitions must name at least one stored day")
    if not config.reason.strip():
        raise ValueError("BaselineConfig.reason must say why this baseline is accepted")
    frames = []
    for key in sorted(config.partitions):
        raw = lake.read_dataset(RAW_TRANSACTIONS, key)
        valid, _ = split_rows(raw, validate_transactions(raw, partition_day(key)))
        frames.append(valid)
    rows = pl.concat(frames, how="vertical")
    profile = build_profile(rows, config.partitions)
    profile["reason"] = config.reason
    sample = rows.sample(min(_REFERENCE_SAMPLE_ROWS, rows.height), seed=0)
    version = lake.save_baseline(BASELINE, profile, sample)
    context.log.info(f"Accepted {BASELINE} baseline {version}: {config.reason}")
    shares = pl.DataFrame(
        [
            {"column": column, "category": category, "share": share}
            for column, categories in profile["categorical"].items()
            for category, share in sorted(categories.items(), key=lambda kv: -kv[1])[:3]
        ]
    )
    return MaterializeResult(
        data_version=DataVersion(version),
        metadata={
            "baseline_version": MetadataValue.text(version),
            "partitions": MetadataValue.json(profile["partitions"]),
            "reason": MetadataValue.text(config.reason),
            "accepted_by": MetadataValue.text(
                context.run.tags.get("flywheel/acceptance", "a person")
            ),
            "rows": MetadataValue.int(profile["rows"]),
            "rows_per_day": MetadataValue.float(profile["rows_per_day"]),
            "drift_thresholds": MetadataValue.json(
                {"warn": quality_policy.drift_warn, "halt": quality_policy.drift_halt}
            ),
            "top_categories": MetadataValue.md(to_markdown(shares)),
        },
    )
