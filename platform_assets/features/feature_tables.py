"""Feature tables: the parquet sources of the Feast feature views, one file per day.

Each day is computed from validated transactions only (quarantined rows never become features)
and depends on the trailing days its windows reach back over, so a new day costs one day's
computation and never rewrites history. A day of customer rows reads its own payments, the three
days its windows' edges fall in and one row per customer and day of the month before
(``customer_daily_activity``), not a month of payments: its cost does not grow with the windows.

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
from platform_assets.common.keys import (
    CUSTOMER_DAILY_ACTIVITY,
    FRAUD_LABELS,
    RAW_TRANSACTIONS,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, daily_partitions, partition_day
from platform_assets.features import engineering, merchant_risk, sharding
from resources.clock import Clock
from resources.dask_cluster import DaskCluster
from resources.label_policy import (
    DEFAULT_LABEL_DELAY_DAYS,
    DEFAULT_MATURITY_DAYS,
    DEFAULT_RISK_WINDOW_DAYS,
    LabelPolicy,
)
from resources.lake import Lake

# How far back a merchant row reads, under the default label policy (shown as lineage in the UI).
MERCHANT_HISTORY_DAYS = merchant_risk.merchant_history_span(
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


def _trailing(key: AssetKey, days: int, through: int = 0) -> list[AssetDep]:
    """A dependency on the ``days`` days of ``key`` before the same day and the next ones.

    Up to ``through`` days from the same day: 0 for the same day, -1 for the day before.
    """
    mapping = TimeWindowPartitionMapping(
        start_offset=-days, end_offset=through, allow_nonexistent_upstream_partitions=True
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
) -> tuple[list[str], dict[str, Any]]:
    """The stored partitions of ``days`` (from the first business day on), and their metadata.

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
    return stored, metadata


def _activity(
    context: AssetExecutionContext, lake: Lake, days: list[datetime.date], stored: list[str]
) -> tuple[pl.LazyFrame, dict[str, Any]]:
    """The daily activity of those of ``days`` whose transactions are ``stored``.

    A day whose activity is not stored (still on its way in the day's own run, or ingested before
    ``customer_daily_activity`` existed) is derived from its transactions here, and named.
    """
    wanted = [day.isoformat() for day in days if day.isoformat() in stored]
    computed = lake.stored_partitions(CUSTOMER_DAILY_ACTIVITY, wanted)
    parts = [lake.scan_partitions(CUSTOMER_DAILY_ACTIVITY, computed)] if computed else []
    if derived := sorted(set(wanted) - set(computed)):
        context.log.info(
            f"customer_daily_activity of {len(derived)} day(s) is not stored, derived from their "
            f"transactions ({derived[0]}..{derived[-1]}); materialize those days to spare it"
        )
        transactions = lake.scan_partitions(VALIDATED_TRANSACTIONS, derived)
        parts.append(engineering.customer_daily_activity(transactions).lazy())
    metadata = {
        "customer_daily_activity_days_read": MetadataValue.int(len(computed)),
        "customer_daily_activity_days_derived": MetadataValue.text(", ".join(derived) or "none"),
    }
    if not parts:
        return pl.LazyFrame(schema=engineering.CUSTOMER_ACTIVITY_SCHEMA), metadata
    return pl.concat(parts), metadata


@daily_table(FEATURES, kinds={"polars", "parquet"})(deps=[VALIDATED_TRANSACTIONS])
def customer_daily_activity(context: AssetExecutionContext, lake: Lake):
    """Each customer's payments of the day per country: count, amount sum, spread and maximum.

    What the 7- and 30-day windows of ``customer_features`` and its home country need of a whole
    day, kept once: a day of customer rows reads these rows for the month before it instead of
    the month's payments. The spread is the sum of squared deviations from the mean (M2), which
    combines across days exactly.
    """
    stored, _ = _history(
        context, lake, VALIDATED_TRANSACTIONS, [partition_day(context.partition_key)], ""
    )
    rows = engineering.customer_daily_activity(lake.scan_partitions(VALIDATED_TRANSACTIONS, stored))
    return dataset_output(rows, customers=MetadataValue.int(rows["customer_id"].n_unique()))


@feature_table(
    deps=[
        *_trailing(VALIDATED_TRANSACTIONS, days=engineering.CUSTOMER_HISTORY.days),
        *_trailing(CUSTOMER_DAILY_ACTIVITY, days=engineering.CUSTOMER_HISTORY.days, through=-1),
    ]
)
def customer_features(
    context: AssetExecutionContext,
    lake: Lake,
    clock: Clock,
    label_policy: LabelPolicy,
    dask_cluster: DaskCluster,
):
    """Each transaction's customer behaviour right after it, the customer's velocity signal.

    Counts and amounts over the last 1 h, 24 h, 7 and 30 days, distinct merchants, home country
    and the time of the payment. The source of Feast's ``customer_behaviour`` view
    (``feature_repo/fraud_detection.py``). Computed from the day's payments, those of the days
    its windows' edges fall in and ``customer_daily_activity`` of the month before; in shards of
    customers on the Dask cluster when ``dask_cluster.feature_shards`` says so.
    """
    day = partition_day(context.partition_key)
    days = engineering.customer_history_days([day])
    history_from = _history_start(context, clock, label_policy.maturity_days, days)
    stored, metadata = _history(context, lake, VALIDATED_TRANSACTIONS, days, history_from)
    activity, activity_metadata = _activity(
        context, lake, engineering.customer_activity_days(day), stored
    )
    edges = [d.isoformat() for d in engineering.customer_edge_days(day)]
    transactions = lake.scan_partitions(VALIDATED_TRANSACTIONS, [d for d in edges if d in stored])
    with dask_cluster.feature_cluster() as cluster:
        if cluster is None:
            rows = engineering.customer_features_incremental(transactions, activity, day)
            computed_on = "this run's process"
        else:
            shards = dask_cluster.feature_shards
            rows = sharding.customer_features_sharded(cluster, transactions, activity, day, shards)
            computed_on = f"{shards} shards on {dask_cluster.engine}"
    return dataset_output(
        rows,
        customers=MetadataValue.int(rows["customer_id"].n_unique()),
        computed_on=MetadataValue.text(computed_on),
        **metadata,
        **activity_metadata,
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
    days = merchant_risk.merchant_history_days(
        [day],
        label_policy.maturity_days,
        label_policy.merchant_risk_window_days,
        label_policy.label_delay_days,
    )
    history_from = _history_start(context, clock, label_policy.maturity_days, days)
    transactions, metadata = _history(context, lake, VALIDATED_TRANSACTIONS, days, history_from)
    labels, label_metadata = _history(context, lake, FRAUD_LABELS, days, history_from)
    rows = merchant_risk.merchant_features(
        lake.scan_partitions(VALIDATED_TRANSACTIONS, transactions),
        lake.scan_partitions(FRAUD_LABELS, labels) if labels else EMPTY_LABELS,
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
