"""Feature tables: the parquet sources of the Feast feature views, one file per day.

Each day is computed from validated transactions only (quarantined rows never become features)
and depends on the trailing days its windows reach back over, so a new day costs one day's
computation and never rewrites history.

A window is never silently short. The days before the platform's history began are no hole: the
first days of history have none before them. A day of the history that has not landed (its run
still under way, as when the history is ingested two runs at a time, or not ingested yet) fails
the day, naming it, and automation computes the day again once it lands
(``REBUILD_WHEN_HISTORY_LANDS``). A day the contract halted (or that failed to ingest) is left
out and named in the metadata and the log: failing every day whose windows reach it would stop a
month of features and scoring over one bad batch.
"""

import datetime
import functools
from typing import Any

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetPartitionStatus,
    AssetSelection,
    AutomationCondition,
    Failure,
    MetadataValue,
    TimeWindowPartitionMapping,
)

from platform_assets.common.bootstrap import history_start
from platform_assets.common.catalog import FEATURES, daily_table
from platform_assets.common.datasets import dataset_output
from platform_assets.common.keys import FRAUD_LABELS, RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, daily_partitions, partition_day
from platform_assets.features import engineering
from resources.clock import Clock
from resources.label_policy import (
    DEFAULT_LABEL_DELAY_DAYS,
    DEFAULT_MATURITY_DAYS,
    DEFAULT_RISK_WINDOW_DAYS,
    LabelPolicy,
)
from resources.lake import Lake

# How far back a merchant row reads, under the default label policy (shown as lineage in the UI).
MERCHANT_HISTORY_DAYS = engineering.merchant_history_span(
    DEFAULT_MATURITY_DAYS, DEFAULT_RISK_WINDOW_DAYS, DEFAULT_LABEL_DELAY_DAYS
)
EMPTY_LABELS = pl.LazyFrame(
    schema={"transaction_id": pl.Int64, "reported_at": pl.Datetime("us", "UTC")}
)

# A day that failed because a day of its windows had not landed is computed again once a day of
# its windows lands (and none is on its way), once per landing. Not a day whose own transactions
# were halted (nor, until the halted day is replayed, one whose windows reach a halted day).
REBUILD_WHEN_HISTORY_LANDS = (
    AutomationCondition.execution_failed()
    & AutomationCondition.any_deps_updated().since(
        AutomationCondition.newly_requested() | AutomationCondition.newly_updated()
    )
    & ~AutomationCondition.any_deps_match(AutomationCondition.execution_failed()).allow(
        AssetSelection.assets(VALIDATED_TRANSACTIONS)
    )
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("rebuild_when_history_lands")
# What the states of a day that has not landed mean, as the failure names them.
_NOT_LANDED = {
    None: "not ingested yet",
    AssetPartitionStatus.IN_PROGRESS: "on its way",
    AssetPartitionStatus.MATERIALIZED: "materialized but not in the lake",
}

# What both daily feature tables share in the catalog.
feature_table = functools.partial(
    daily_table(FEATURES, kinds={"polars", "parquet", "feast"}),
    automation_condition=REBUILD_WHEN_HISTORY_LANDS,
    # 2: the 24-hour mean amount, and the merchant fraud rates one label delay back.
    code_version="2",
)


def missing_days(description: str, missing: dict[str, list[str]]) -> Failure:
    """A failure the UI shows with its reason and, per metadata key, the days it misses."""
    return Failure(
        description=description,
        metadata={key: MetadataValue.text(", ".join(days)) for key, days in missing.items()},
    )


def _trailing(key: AssetKey, days: int) -> list[AssetDep]:
    """A dependency on the same day of ``key`` and the ``days`` before it."""
    mapping = TimeWindowPartitionMapping(
        start_offset=-days, allow_nonexistent_upstream_partitions=True
    )
    return [AssetDep(key, partition_mapping=mapping)]


def _history_start(
    context: AssetExecutionContext, clock: Clock, maturity_days: int, days: list[datetime.date]
) -> str:
    """The first day of ``days`` in the platform's history: a missing day from it on is a hole.

    Not before the first business day, nor the history the bootstrap ingests (the days before
    it are never ingested, on a first start or after a long pause), nor the first day the
    platform has tried to ingest (stored, under way or failed).
    """
    first = history_start(clock.now(), maturity_days).isoformat()
    keys = [day.isoformat() for day in days if day.isoformat() >= first]
    status = context.instance.get_status_by_partition(RAW_TRANSACTIONS, keys, daily_partitions)
    tried = [key for key in keys if (status or {}).get(key) is not None]
    return tried[0] if tried else context.partition_key


def _history(
    context: AssetExecutionContext,
    lake: Lake,
    asset_key: AssetKey,
    days: list[datetime.date],
    history_from: str,
) -> tuple[pl.LazyFrame | None, dict[str, Any]]:
    """Scan the stored partitions of ``days`` (from the first business day on), None if none is.

    The partition's own day of transactions must be stored, and every day from ``history_from``
    on must have landed (a halted or failed day is left out, named in the metadata).

    Raises:
        Failure: A day of the history has not landed: the windows would be silently short.
    """
    table, name = context.asset_key.to_user_string(), asset_key.to_user_string()
    wanted = [day.isoformat() for day in days if day.isoformat() >= FIRST_BUSINESS_DAY]
    stored = lake.stored_partitions(asset_key, wanted)
    if context.partition_key not in stored and asset_key == VALIDATED_TRANSACTIONS:
        raise FileNotFoundError(
            f"validated_transactions {context.partition_key} is not materialized; "
            "ingest the day (or clear its halt) first"
        )
    missing = sorted(set(wanted) - set(stored))
    holes = [day for day in missing if day >= history_from]
    status = context.instance.get_status_by_partition(asset_key, holes, daily_partitions) or {}
    halted = [day for day in holes if status.get(day) == AssetPartitionStatus.FAILED]
    if landing := [day for day in holes if day not in halted]:
        states = ", ".join(
            f"{day} ({_NOT_LANDED.get(status.get(day), 'missing')})" for day in landing
        )
        raise missing_days(
            f"{table} {context.partition_key}: {name} {states} has not landed, so the day's "
            "windows would be short of it. Automation computes the day again once it lands "
            "(rebuild_when_history_lands).",
            {f"{asset_key.path[-1]}_days_not_landed": landing},
        )
    if before := [day for day in missing if day < history_from]:
        context.log.info(
            f"{name}: the windows start where the platform's history does ({history_from}); "
            f"{len(before)} earlier day(s) ({before[0]}..{before[-1]}) were never history"
        )
    if halted:
        context.log.warning(
            f"{name}: {len(halted)} day(s) of the history halted or failed to ingest, the "
            f"windows go without them: {', '.join(halted)}"
        )
    metadata = {
        f"{asset_key.path[-1]}_days_read": MetadataValue.int(len(stored)),
        f"{asset_key.path[-1]}_days_missing": MetadataValue.text(", ".join(missing) or "none"),
    }
    return (lake.scan_partitions(asset_key, stored) if stored else None), metadata


@feature_table(deps=_trailing(VALIDATED_TRANSACTIONS, days=engineering.CUSTOMER_HISTORY.days))
def customer_features(
    context: AssetExecutionContext, lake: Lake, clock: Clock, label_policy: LabelPolicy
):
    """Each transaction's customer behaviour right after it, the customer's velocity signal.

    Counts and amounts over the last 1 h, 24 h, 7 and 30 days, distinct merchants, home country
    and the time of the payment. The source of Feast's ``customer_behaviour`` view
    (``feature_repo/fraud_detection.py``).
    """
    day = partition_day(context.partition_key)
    days = engineering.customer_history_days([day])
    history_from = _history_start(context, clock, label_policy.maturity_days, days)
    history, metadata = _history(context, lake, VALIDATED_TRANSACTIONS, days, history_from)
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
def merchant_features(
    context: AssetExecutionContext, lake: Lake, clock: Clock, label_policy: LabelPolicy
):
    """Each merchant at the end of the day: its volume and how often it is charged back.

    Volume over the last day and week, the share of its matured transactions (older than the
    label window) that were charged back, and its fraud rates over the 1, 7 and 30 days ending
    one label delay ago (label_policy.label_delay_days), counting the frauds known so far. The
    source of Feast's ``merchant_risk`` view.
    """
    day = partition_day(context.partition_key)
    days = engineering.merchant_history_days(
        [day],
        label_policy.maturity_days,
        label_policy.merchant_risk_window_days,
        label_policy.label_delay_days,
    )
    history_from = _history_start(context, clock, label_policy.maturity_days, days)
    transactions, metadata = _history(context, lake, VALIDATED_TRANSACTIONS, days, history_from)
    labels, label_metadata = _history(context, lake, FRAUD_LABELS, days, history_from)
    assert transactions is not None  # the partition's own day is stored, or _history raised
    rows = engineering.merchant_features(
        transactions,
        EMPTY_LABELS if labels is None else labels,
        [day],
        label_policy.maturity_days,
        label_policy.merchant_risk_window_days,
        label_policy.label_delay_days,
    )
    return dataset_output(
        rows,
        merchants_with_matured_labels=MetadataValue.int(
            rows.filter(pl.col("merchant_matured_txn_count") > 0).height
        ),
        **metadata,
        **label_metadata,
    )
