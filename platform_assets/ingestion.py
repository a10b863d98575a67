"""Ingestion: the source's daily batches, stored as delivered, then split by the data contract.

Raw rows are always kept (``raw_transactions``) so a halted day can be replayed once the source
is fixed or a new baseline accepted. The split into ``validated_transactions`` and
``quarantined_transactions`` loses nothing: every raw row lands in exactly one of them.
"""

import datetime
import functools

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    FreshnessPolicy,
    MetadataValue,
    asset,
    multi_asset,
)

from platform_assets.datasets import dataset_output
from platform_assets.partitions import daily_partitions, partition_day
from platform_assets.quality import failure_summary, split_rows, to_markdown, validate_transactions
from resources.clock import Clock
from resources.quality_policy import QualityPolicy
from resources.source_system import SourceSystem

GROUP = "ingestion"
OWNERS = ["team:ml-platform"]
ARRIVAL_CHECK = "arrived_on_time"

# A day should be stored by 03:00 UTC the next day; the freshness sensor acts on the same
# deadline (QualityPolicy.max_lateness_hours).
RAW_TRANSACTIONS_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron="0 3 * * *", lower_bound_delta=datetime.timedelta(hours=3)
)


# What every daily ingestion dataset shares in the catalog.
daily_dataset = functools.partial(
    asset,
    partitions_def=daily_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"polars", "parquet"},
    tags={"flywheel/stage": "ingest"},
    code_version="1",
)


@daily_dataset(
    freshness_policy=RAW_TRANSACTIONS_FRESHNESS,
    check_specs=[
        AssetCheckSpec(
            ARRIVAL_CHECK,
            asset="raw_transactions",
            description="The source delivered the day within QualityPolicy.max_lateness_hours.",
        )
    ],
)
def raw_transactions(
    context: AssetExecutionContext,
    source: SourceSystem,
    clock: Clock,
    quality_policy: QualityPolicy,
):
    """A day of card transactions exactly as the source delivered them, bad rows included.

    The checks below judge this batch; nothing downstream reads it until the blocking ones pass,
    and it stays stored so a halted day can be replayed.
    """
    day = partition_day(context.partition_key)
    delivery = source.fetch("transactions", day, as_of=clock.now())
    day_end = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC) + (
        datetime.timedelta(days=1)
    )
    late_hours = (
        (delivery.available_at - day_end).total_seconds() / 3600 if delivery.available_at else 0.0
    )
    yield dataset_output(
        delivery.frame,
        source=MetadataValue.text(source.describe()),
        available_at=MetadataValue.text(str(delivery.available_at)),
    )
    yield AssetCheckResult(
        check_name=ARRIVAL_CHECK,
        passed=late_hours <= quality_policy.max_lateness_hours,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "hours_after_day_end": MetadataValue.float(round(late_hours, 2)),
            "allowed_hours": MetadataValue.float(quality_policy.max_lateness_hours),
        },
        description=f"Delivered {late_hours:.1f} h after the day ended.",
    )


@daily_dataset()
def fraud_labels(context: AssetExecutionContext, source: SourceSystem, clock: Clock):
    """Chargebacks reported on the day (partition = report day): the fraud labels.

    Labels arrive days or weeks after the transaction, so a transaction without a chargeback is
    only known to be legitimate once the label window has passed.
    """
    day = partition_day(context.partition_key)
    delivery = source.fetch("chargebacks", day, as_of=clock.now())
    return dataset_output(delivery.frame, source=MetadataValue.text(source.describe()))


@multi_asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    outs={
        "validated_transactions": AssetOut(
            description=(
                "The day's transactions that passed the data contract: what every feature, "
                "training set and monitor downstream is built from."
            ),
            owners=OWNERS,
            kinds={"polars", "parquet"},
            code_version="1",
        ),
        "quarantined_transactions": AssetOut(
            description=(
                "The day's rows that failed the contract, kept as delivered with their position "
                "in the batch (source_row) and the rules they broke (failed_rules)."
            ),
            owners=OWNERS,
            kinds={"polars", "parquet"},
            code_version="1",
        ),
    },
)
def split_transactions(context: AssetExecutionContext, raw_transactions: pl.DataFrame):
    """Split the raw day by the contract; the counts reconcile exactly with the raw rows."""
    day = partition_day(context.partition_key)
    result = validate_transactions(raw_transactions, day)
    valid, quarantined = split_rows(raw_transactions, result)
    reconciliation = {
        "raw_rows": MetadataValue.int(raw_transactions.height),
        "validated_rows": MetadataValue.int(valid.height),
        "quarantined_rows": MetadataValue.int(quarantined.height),
    }
    yield dataset_output(valid, output_name="validated_transactions", **reconciliation)
    yield dataset_output(
        quarantined,
        output_name="quarantined_transactions",
        failures=MetadataValue.md(to_markdown(failure_summary(result))),
        **reconciliation,
    )
