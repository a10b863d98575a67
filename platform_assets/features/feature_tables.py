"""Feature tables: the parquet sources of the Feast feature views, one file per day.

Each day is computed from validated transactions only (quarantined rows never become features)
and depends on the trailing days its windows reach back over, so a new day costs one day's
computation and never rewrites history. Missing history (a halted day, or the days before the
lake was filled) is named in the metadata rather than hidden: the windows then see less.
"""

import datetime
from typing import Any

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
    TimeWindowPartitionMapping,
)

from platform_assets.common.catalog import FEATURES, daily_table
from platform_assets.common.datasets import dataset_output
from platform_assets.common.keys import FRAUD_LABELS, VALIDATED_TRANSACTIONS
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, partition_day
from platform_assets.features import engineering
from resources.label_policy import DEFAULT_MATURITY_DAYS, DEFAULT_RISK_WINDOW_DAYS, LabelPolicy
from resources.lake import Lake

# How far back a merchant row reads, under the default label policy (shown as lineage in the UI).
MERCHANT_HISTORY_DAYS = DEFAULT_MATURITY_DAYS + DEFAULT_RISK_WINDOW_DAYS - 1
EMPTY_LABELS = pl.LazyFrame(
    schema={"transaction_id": pl.Int64, "reported_at": pl.Datetime("us", "UTC")}
)

# What both daily feature tables share in the catalog.
feature_table = daily_table(FEATURES, kinds={"polars", "parquet", "feast"})


def _trailing(key: AssetKey, days: int) -> list[AssetDep]:
    """A dependency on the same day of ``key`` and the ``days`` before it."""
    mapping = TimeWindowPartitionMapping(
        start_offset=-days, allow_nonexistent_upstream_partitions=True
    )
    return [AssetDep(key, partition_mapping=mapping)]


def _history(
    context: AssetExecutionContext, lake: Lake, asset_key: AssetKey, days: list[datetime.date]
) -> tuple[pl.LazyFrame | None, dict[str, Any]]:
    """Scan the stored partitions of ``days`` (from the first business day on), None if none is.

    The metadata names the missing days. The partition's own day of transactions must be stored.
    """
    wanted = [day.isoformat() for day in days if day.isoformat() >= FIRST_BUSINESS_DAY]
    stored = lake.stored_partitions(asset_key, wanted)
    if context.partition_key not in stored and asset_key == VALIDATED_TRANSACTIONS:
        raise FileNotFoundError(
            f"validated_transactions {context.partition_key} is not materialized; "
            "ingest the day (or clear its halt) first"
        )
    missing = sorted(set(wanted) - set(stored))
    # Days before the first stored one are before the platform's history began: expected on
    # its first days, so said once as a range. A gap inside the history is a warning.
    gaps = [day for day in missing if stored and day > min(stored)]
    before = len(missing) - len(gaps)
    if before:
        context.log.info(
            f"{asset_key.to_user_string()}: the windows start at the first stored day; "
            f"{before} earlier day(s) ({missing[0]}..{missing[before - 1]}) were never ingested"
        )
    if gaps:
        context.log.warning(
            f"{asset_key.to_user_string()}: {len(gaps)} day(s) inside the history not stored "
            f"(halted or not ingested), the windows see less: {', '.join(gaps)}"
        )
    metadata = {
        f"{asset_key.path[-1]}_days_read": MetadataValue.int(len(stored)),
        f"{asset_key.path[-1]}_days_missing": MetadataValue.text(", ".join(missing) or "none"),
    }
    return (lake.scan_partitions(asset_key, stored) if stored else None), metadata


@feature_table(deps=_trailing(VALIDATED_TRANSACTIONS, days=engineering.CUSTOMER_HISTORY.days))
def customer_features(context: AssetExecutionContext, lake: Lake):
    """Each transaction's customer behaviour right after it, the customer's velocity signal.

    Counts and amounts over the last 1 h, 24 h, 7 and 30 days, distinct merchants, home country
    and the time of the payment. The source of Feast's ``customer_behaviour`` view
    (``feature_repo/fraud_detection.py``).
    """
    day = partition_day(context.partition_key)
    history, metadata = _history(
        context, lake, VALIDATED_TRANSACTIONS, engineering.customer_history_days([day])
    )
    assert history is not None  # the partition's own day is stored, or _history raised
    rows = engineering.customer_features(history, [day])
    return dataset_output(
        rows, customers=MetadataValue.int(rows["customer_id"].n_unique()), **metadata
    )


@feature_table(
    deps=[
        *_trailing(VALIDATED_TRANSACTIONS, days=MERCHANT_HISTORY_DAYS),
        *_trailing(FRAUD_LABELS, days=MERCHANT_HISTORY_DAYS),
    ]
)
def merchant_features(context: AssetExecutionContext, lake: Lake, label_policy: LabelPolicy):
    """Each merchant at the end of the day: its volume and how often it is charged back.

    Volume over the last day and week, and the share of its matured transactions (older than
    the label window) that were charged back. The source of Feast's ``merchant_risk`` view;
    young transactions are left out of the rate, their chargebacks may still be on the way.
    """
    day = partition_day(context.partition_key)
    days = engineering.merchant_history_days(
        [day], label_policy.maturity_days, label_policy.merchant_risk_window_days
    )
    transactions, metadata = _history(context, lake, VALIDATED_TRANSACTIONS, days)
    labels, label_metadata = _history(context, lake, FRAUD_LABELS, days)
    assert transactions is not None  # the partition's own day is stored, or _history raised
    rows = engineering.merchant_features(
        transactions,
        EMPTY_LABELS if labels is None else labels,
        [day],
        label_policy.maturity_days,
        label_policy.merchant_risk_window_days,
    )
    return dataset_output(
        rows,
        merchants_with_matured_labels=MetadataValue.int(
            rows.filter(pl.col("merchant_matured_txn_count") > 0).height
        ),
        **metadata,
        **label_metadata,
    )
