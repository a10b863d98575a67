"""Automation for ingestion: pull each new day without a click, and re-pull a day that is late.

The ingestion sensor asks for each day once it has landed by the platform's clock (the real
time in ``make dev``, the scenario's compressed clock in ``make demo``), and on an empty instance
for the history a first model needs. The freshness sensor is the safety net for a source that
delivers late or not at all: once a day's deadline has passed and the day is still missing (or
its last run failed), it alerts once and requests the partition again every hour until it
lands. Days whose deadline passed before the platform was watching are history, not late.
"""

import datetime
import json

from dagster import (
    AssetPartitionStatus,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from platform_assets.common.bootstrap import BASELINE_DAYS, landed_days
from platform_assets.common.catalog import INGESTION
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    MERCHANT_FEATURES,
    RAW_TRANSACTIONS,
    TRAINING_SET,
    TRANSACTION_BASELINE,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, daily_partitions
from resources.alerting import Alerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
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


@sensor(
    job=ingestion_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Ingests each day once it has landed by the platform's clock (an hour after it ended). "
        "On an empty instance it first ingests the history a first model needs, the baseline's "
        f"{BASELINE_DAYS} days first."
    ),
)
def ingestion_sensor(
    context: SensorEvaluationContext, clock: Clock, label_policy: LabelPolicy
) -> SensorResult | SkipReason:
    """Request every landed day of the history window that was never ingested, once each."""
    landed = landed_days(clock.now(), label_policy.maturity_days)
    if not landed:
        return SkipReason("No day has landed yet.")
    status = context.instance.get_status_by_partition(RAW_TRANSACTIONS, landed, daily_partitions)
    status = status or {}
    new = [day for day in landed if status.get(day) is None]
    if _bootstrapping(context):
        # The baseline's days go first, so that every later day is judged against them; a day
        # that failed or was halted does not count, so the next one is fetched in its place.
        new = new[: max(0, BASELINE_DAYS - len(_usable_for_baseline(context, landed)))]
        if not new:
            return SkipReason(
                f"The first {BASELINE_DAYS} days are ingested; waiting for the first baseline "
                "(bootstrap_sensor accepts it) before the rest of the history."
            )
    if not new:
        return SkipReason(f"Every day up to {landed[-1]} is ingested or on its way.")
    trigger = "new day" if len(new) == 1 and new[0] == landed[-1] else "history"
    return SensorResult(
        run_requests=[
            RunRequest(
                partition_key=day, run_key=f"ingest-{day}", tags={"flywheel/trigger": trigger}
            )
            for day in new
        ]
    )


def _usable_for_baseline(context: SensorEvaluationContext, landed: list[str]) -> list[str]:
    """Days that passed the contract, or are still on their way through it."""
    usable = (AssetPartitionStatus.MATERIALIZED, AssetPartitionStatus.IN_PROGRESS)
    raw, validated = (
        context.instance.get_status_by_partition(key, landed, daily_partitions) or {}
        for key in (RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS)
    )
    return [
        day
        for day in landed
        if validated.get(day) in usable or raw.get(day) == AssetPartitionStatus.IN_PROGRESS
    ]


def _bootstrapping(context: SensorEvaluationContext) -> bool:
    """Whether the instance is empty of baselines and models: its first days come first."""
    return all(
        context.instance.get_latest_materialization_event(key) is None
        for key in (TRANSACTION_BASELINE, TRAINING_SET)
    )


def overdue_days(
    now: datetime.datetime, max_lateness_hours: float, since: datetime.datetime | None = None
) -> list[str]:
    """Partition keys of the recent days whose delivery deadline passed by ``now``.

    With ``since``, only deadlines after it: a day that was due before the platform watched is
    history for the ingestion sensor to catch up, not a late delivery.
    """
    first = datetime.date.fromisoformat(FIRST_BUSINESS_DAY)
    keys = []
    for back in range(FRESHNESS_LOOKBACK_DAYS, 0, -1):
        day = now.date() - datetime.timedelta(days=back)
        deadline = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC) + (
            datetime.timedelta(days=1, hours=max_lateness_hours)
        )
        if day >= first and deadline <= now and (since is None or deadline > since):
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
) -> SensorResult:
    """Find late days and ask for them again, at most once an hour each."""
    now = clock.now()
    state = json.loads(context.cursor) if context.cursor else {"since": now.isoformat()}
    since = datetime.datetime.fromisoformat(state["since"])
    due = overdue_days(now, quality_policy.max_lateness_hours, since)
    if not due:
        return SensorResult(
            cursor=json.dumps(state),
            skip_reason=f"No day is past its delivery deadline since {state['since']}.",
        )
    status = context.instance.get_status_by_partition(RAW_TRANSACTIONS, due, daily_partitions)
    status = status or {}
    late = [key for key in due if status.get(key) in (None, AssetPartitionStatus.FAILED)]
    if not late:
        return SensorResult(
            cursor=json.dumps(state),
            skip_reason=f"All {len(due)} recent days up to {due[-1]} are stored or running.",
        )
    already_alerted = set(state.get("alerted", []))
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
        cursor=json.dumps({"since": state["since"], "alerted": sorted(late)}),
    )
