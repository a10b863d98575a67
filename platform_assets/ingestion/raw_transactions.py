"""The source's daily deliveries, stored exactly as delivered: transactions and fraud labels.

Raw rows are always kept (``raw_transactions``) so a halted day can be replayed once the source
is fixed or a new baseline accepted; the checks in ``delivery_checks.py`` judge them before
anything downstream reads them. Every delivery of a day is kept: ingesting a day again adds
``raw_transactions/versions/<day>/delivery-<n>.parquet`` and makes it the day's current rows
(``raw_transactions/<day>.parquet``, which every reader reads); earlier deliveries stay as they
arrived.
"""

import datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    FreshnessPolicy,
    MetadataValue,
)

from platform_assets.common.catalog import INGESTION, daily_table
from platform_assets.common.datasets import dataset_output
from platform_assets.common.partitions import partition_day
from resources.clock import Clock
from resources.lake import EVERY_DELIVERY, KEEP_VERSIONS
from resources.quality_policy import QualityPolicy
from resources.sources.systems import SourceSystem

ARRIVAL_CHECK = "arrived_on_time"

# A day should be stored by 03:00 UTC the next day; the freshness sensor acts on the same
# deadline (QualityPolicy.max_lateness_hours).
RAW_TRANSACTIONS_FRESHNESS = FreshnessPolicy.cron(
    deadline_cron="0 3 * * *", lower_bound_delta=datetime.timedelta(hours=3)
)

# What every daily ingestion dataset shares in the catalog.
daily_dataset = daily_table(INGESTION, kinds={"polars", "parquet"})


@daily_dataset(
    freshness_policy=RAW_TRANSACTIONS_FRESHNESS,
    # The lake keeps each delivery of a day; the materialization names the current one.
    metadata={KEEP_VERSIONS: EVERY_DELIVERY},
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
    and it stays stored so a halted day can be replayed. A day ingested again keeps every
    delivery; the latest is current (metadata ``current_delivery`` and ``deliveries_kept``).
    """
    day = partition_day(context.partition_key)
    delivery = source.fetch("transactions", day, as_of=clock.now())
    day_end = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC) + (
        datetime.timedelta(days=1)
    )
    yield dataset_output(
        delivery.frame,
        source=MetadataValue.text(source.describe()),
        available_at=MetadataValue.text(str(delivery.available_at)),
    )
    if delivery.available_at is None:
        # The source says nothing of when it delivered; the run's own time would be a guess.
        yield AssetCheckResult(
            check_name=ARRIVAL_CHECK,
            passed=True,
            severity=AssetCheckSeverity.WARN,
            metadata={"allowed_hours": MetadataValue.float(quality_policy.max_lateness_hours)},
            description="Delivery time unknown (the source declares no loaded_at_column or "
            "completeness marker): not judged.",
        )
        return
    late_hours = (delivery.available_at - day_end).total_seconds() / 3600
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
