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
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from platform_assets.common.bootstrap import BASELINE_DAYS, landed_days
from platform_assets.common.catalog import INGESTION
from platform_assets.common.keys import (
    CHAMPION_SCORES,
    CUSTOMER_DAILY_ACTIVITY,
    CUSTOMER_FEATURES,
    MERCHANT_FEATURES,
    MODEL_MONITORING_REPORT,
    PRODUCTION_MODEL,
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

# Dagster's run-queue priority tag (default 0; higher runs first) and the history's priority.
PRIORITY_TAG = "dagster/priority"
HISTORY_PRIORITY = "-1"
# A run not yet finished (queued or running): what it is for is on its way.
UNFINISHED_RUNS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
# Days the freshness sensor looks back over; older gaps are a backfill, not a late delivery.
FRESHNESS_LOOKBACK_DAYS = 7

# A day: fetched, checked and split, its labels fetched and its feature rows computed...
DAY_SELECTION = AssetSelection.groups(INGESTION) | AssetSelection.assets(
    CUSTOMER_DAILY_ACTIVITY, CUSTOMER_FEATURES, MERCHANT_FEATURES
)
# ...then scored by that day's champion and reported on.
MONITORING_SELECTION = AssetSelection.assets(CHAMPION_SCORES, MODEL_MONITORING_REPORT)

ingestion_job = define_asset_job(
    "ingestion_job",
    # One run a day, so the online store, training sets and monitoring never wait for a second
    # trigger, and a day is monitored by the platform's clock (declarative automation only looks
    # at the real calendar's latest day, which a scenario on a compressed clock never reaches).
    selection=DAY_SELECTION | MONITORING_SELECTION,
    partitions_def=daily_partitions,
    description=(
        "Fetch, check and split one day of transactions, fetch that day's labels, compute the "
        "day's customer activity and customer and merchant feature rows, score the day with "
        "that day's champion and report on it (a day before the first champion stops after "
        "its features)."
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
    # History queues behind every other run (Dagster's run queue takes higher priorities
    # first): while days are caught up after a restart, a new day, a retraining, the gate and a
    # canary's analysis do not wait for them.
    tags = {"flywheel/trigger": trigger}
    if trigger == "history":
        tags[PRIORITY_TAG] = HISTORY_PRIORITY
    # Before the first champion there is nothing to score with: the monitoring steps are left
    # out rather than started to say so (2 s a day, 44 days of a first start's history).
    selection = None
    if context.instance.get_latest_materialization_event(PRODUCTION_MODEL) is None:
        selection = list(DAY_SELECTION.resolve(context.repository_def.asset_graph))  # type: ignore[union-attr]
    return SensorResult(
        run_requests=[
            RunRequest(
                partition_key=day,
                run_key=f"ingest-{day}",
                asset_selection=selection,
                tags=tags,
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
    # A day whose run waits in the queue has no status yet, but is not late.
    on_its_way = {
        record.dagster_run.tags.get("dagster/partition")
        for record in context.instance.get_run_records(
            RunsFilter(job_name=ingestion_job.name, statuses=UNFINISHED_RUNS)
        )
    }
    late = [
        key
        for key in due
        if status.get(key) in (None, AssetPartitionStatus.FAILED) and key not in on_its_way
    ]
    if not late:
        return SensorResult(
            cursor=json.dumps(state),
            skip_reason=f"All {len(due)} recent days up to {due[-1]} are stored or running.",
        )
    # A day is alerted once; an alert that could not be delivered is tried again next tick,
    # and the day is requested either way.
    alerted = [key for key in late if key in state.get("alerted", [])]
    for key in late:
        if key not in alerted and alerter.try_send(
            title=f"raw_transactions {key} is late",
            message=(
                f"The day was due by {quality_policy.max_lateness_hours:g} h after it ended "
                f"and is {'failed' if status.get(key) else 'missing'}; "
                "requesting it again every hour."
            ),
            severity="warning",
            asset="raw_transactions",
            partition=key,
        ):
            alerted.append(key)
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
        cursor=json.dumps({"since": state["since"], "alerted": sorted(alerted)}),
    )
