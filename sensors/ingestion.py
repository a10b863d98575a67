"""Automation for ingestion: pull each new day without a click, and re-pull a day that is late.

The schedule asks for yesterday's partition every night. The freshness sensor is the safety net
for a source that delivers late or not at all: once a day's deadline has passed and the day is
still missing (or its last run failed), it alerts once and requests the partition again every
hour until it lands.
"""

import datetime
import json

from dagster import (
    AssetPartitionStatus,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    sensor,
)

from platform_assets.common.catalog import INGESTION
from platform_assets.common.keys import CUSTOMER_FEATURES, MERCHANT_FEATURES, RAW_TRANSACTIONS
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, daily_partitions
from resources.alerting import Alerter
from resources.clock import Clock
from resources.quality_policy import QualityPolicy

# Days the freshness sensor looks back over; older gaps are a backfill, not a late delivery.
FRESHNESS_LOOKBACK_DAYS = 7

ingestion_job = define_asset_job(
    "ingestion_job",
    # The day's feature rows are computed as soon as the day passes its checks, so the online
    # store and training sets never wait for a second trigger.
    selection=AssetSelection.groups(INGESTION)
    | AssetSelection.assets(CUSTOMER_FEATURES, MERCHANT_FEATURES),
    partitions_def=daily_partitions,
    description=(
        "Fetch, check and split one day of transactions, fetch that day's labels, and compute "
        "the day's customer and merchant feature rows."
    ),
)

daily_ingestion_schedule = build_schedule_from_partitioned_job(
    ingestion_job,
    name="daily_ingestion_schedule",
    hour_of_day=1,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.RUNNING,
    description="At 01:00 UTC, ingest the day that just ended (the source lands it by 00:30).",
)


def overdue_days(now: datetime.datetime, max_lateness_hours: float) -> list[str]:
    """Partition keys of the recent days whose delivery deadline has passed by ``now``."""
    first = datetime.date.fromisoformat(FIRST_BUSINESS_DAY)
    keys = []
    for back in range(FRESHNESS_LOOKBACK_DAYS, 0, -1):
        day = now.date() - datetime.timedelta(days=back)
        deadline = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC) + (
            datetime.timedelta(days=1, hours=max_lateness_hours)
        )
        if day >= first and deadline <= now:
            keys.append(day.isoformat())
    return keys


@sensor(
    job=ingestion_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Re-requests raw_transactions days that are past their deadline and missing or failed; "
        "alerts once per late day."
    ),
)
def raw_transactions_freshness_sensor(
    context: SensorEvaluationContext,
    clock: Clock,
    quality_policy: QualityPolicy,
    alerter: Alerter,
) -> SensorResult | SkipReason:
    """Find late days and ask for them again, at most once an hour each."""
    now = clock.now()
    due = overdue_days(now, quality_policy.max_lateness_hours)
    if not due:
        return SkipReason("No day is past its delivery deadline yet.")
    status = context.instance.get_status_by_partition(RAW_TRANSACTIONS, due, daily_partitions)
    status = status or {}
    late = [key for key in due if status.get(key) in (None, AssetPartitionStatus.FAILED)]
    if not late:
        return SkipReason(f"All {len(due)} recent days up to {due[-1]} are stored or running.")
    already_alerted = set(json.loads(context.cursor)) if context.cursor else set()
    for key in late:
        if key not in already_alerted:
            alerter.send(
                title=f"raw_transactions {key} is late",
                message=(
                    f"The day was due by {quality_policy.max_lateness_hours:g} h after it ended "
                    f"and is {'failed' if status.get(key) else 'missing'}; "
                    "requesting it again every hour."
                ),
                severity="warning",
                asset="raw_transactions",
                partition=key,
            )
    hour = now.strftime("%Y-%m-%dT%H")
    return SensorResult(
        run_requests=[
            RunRequest(
                partition_key=key,
                run_key=f"{key}@{hour}",
                tags={"flywheel/trigger": "freshness"},
            )
            for key in late
        ],
        cursor=json.dumps(sorted(late)),
    )
