"""The first champion without a click: on an empty instance, accept a baseline, then train.

``ingestion_sensor`` ingests the history (``platform_assets.common.bootstrap``); this sensor
does the two steps a person would otherwise type. Once the first ``BASELINE_DAYS`` are ingested
it accepts them as the first drift baseline, tagged as an automatic bootstrap acceptance with
its reason (every later acceptance stays a person's). Once the whole history is ingested it
requests the first ``training_set``; declarative automation trains, gates and promotes from
there. It does nothing on an instance that has a champion or has trained before.
"""

import datetime

from dagster import (
    AssetKey,
    AssetPartitionStatus,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from platform_assets.common.bootstrap import BASELINE_DAYS, FIRST_TRAINING_DAYS, landed_days
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    MERCHANT_FEATURES,
    RAW_TRANSACTIONS,
    TRAINING_SET,
    TRANSACTION_BASELINE,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.partitions import daily_partitions
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry

BOOTSTRAP_TAGS = {"flywheel/trigger": "bootstrap"}
# Failed attempts at a step before the bootstrap waits for a person (see the runs it names).
MAX_ATTEMPTS = 3


@sensor(
    asset_selection=[TRANSACTION_BASELINE, TRAINING_SET],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        f"On an empty instance: accepts the first {BASELINE_DAYS} ingested days as the first "
        f"drift baseline, then requests the first training_set ({FIRST_TRAINING_DAYS} matured "
        "days) once the history is ingested. Idle once a model has been trained."
    ),
)
def bootstrap_sensor(
    context: SensorEvaluationContext,
    clock: Clock,
    label_policy: LabelPolicy,
    model_registry: ModelRegistry,
) -> SensorResult | SkipReason:
    """The next bootstrap step the instance is ready for, if any."""
    instance = context.instance
    if instance.get_latest_materialization_event(TRAINING_SET) is not None:
        return SkipReason("A training set exists: the platform is past its bootstrap.")
    champion = model_registry.champion()
    if champion is not None:
        return SkipReason(f"Version {champion.version} is champion: nothing to bootstrap.")
    landed = landed_days(clock.now(), label_policy.maturity_days)
    if instance.get_latest_materialization_event(TRANSACTION_BASELINE) is None:
        return _first_baseline(context, landed)
    raw, validated, customers, merchants = (
        instance.get_status_by_partition(key, landed, daily_partitions) or {}
        for key in (RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS, CUSTOMER_FEATURES, MERCHANT_FEATURES)
    )
    # Feature rows that failed while a day of their windows was on its way are computed again
    # by automation once it lands; a day the contract halted has no rows to wait for.
    unbuilt = [
        day
        for day in landed
        if validated.get(day) == AssetPartitionStatus.MATERIALIZED
        and AssetPartitionStatus.FAILED in (customers.get(day), merchants.get(day))
    ]
    waiting = [
        day
        for day in landed
        if raw.get(day) != AssetPartitionStatus.MATERIALIZED
        or customers.get(day) == AssetPartitionStatus.IN_PROGRESS
        or day in unbuilt
    ]
    if waiting:
        rows = f"; feature rows of {', '.join(unbuilt)} to compute again" if unbuilt else ""
        return SkipReason(
            f"Ingesting the history: {len(landed) - len(waiting)} of {len(landed)} days done "
            f"({landed[0]}..{landed[-1]}){rows}; the first training set follows."
        )
    # The last day whose labels are all in the ingested label feed (its days up to yesterday).
    last_day = datetime.date.fromisoformat(landed[-1]) - datetime.timedelta(
        days=label_policy.maturity_days
    )
    config = {"days": FIRST_TRAINING_DAYS, "last_day": last_day.isoformat()}
    attempt = _next_attempt(context, TRAINING_SET)
    if isinstance(attempt, SkipReason):
        return attempt
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"bootstrap-training-set-{attempt}",
                asset_selection=[TRAINING_SET],
                run_config={"ops": {"training_set": {"config": config}}},
                tags=BOOTSTRAP_TAGS,
            )
        ]
    )


def _first_baseline(
    context: SensorEvaluationContext, landed: list[str]
) -> SensorResult | SkipReason:
    """Accept the first ingested days that passed the contract as the first baseline."""
    status = context.instance.get_status_by_partition(
        VALIDATED_TRANSACTIONS, landed, daily_partitions
    )
    clean = [day for day in landed if (status or {}).get(day) == AssetPartitionStatus.MATERIALIZED]
    if len(clean) < BASELINE_DAYS:
        return SkipReason(
            f"Waiting for {BASELINE_DAYS} ingested days for the first baseline "
            f"({len(clean)} so far)."
        )
    days = clean[:BASELINE_DAYS]
    reason = (
        f"Automatic bootstrap acceptance on an empty instance: the first {BASELINE_DAYS} days "
        f"ingested ({days[0]}..{days[-1]}) passed the contract; every later acceptance is a "
        "person's."
    )
    config = {"partitions": days, "reason": reason}
    attempt = _next_attempt(context, TRANSACTION_BASELINE)
    if isinstance(attempt, SkipReason):
        return attempt
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"bootstrap-baseline-{attempt}",
                asset_selection=[TRANSACTION_BASELINE],
                run_config={"ops": {"transaction_baseline": {"config": config}}},
                tags={**BOOTSTRAP_TAGS, "flywheel/acceptance": "bootstrap"},
            )
        ]
    )


def _next_attempt(context: SensorEvaluationContext, key: AssetKey) -> int | SkipReason:
    """The number of the next attempt at a bootstrap step: one more than the failed ones.

    A run key per attempt makes a failed run requested again (a key is never launched twice),
    and ``MAX_ATTEMPTS`` failures stop the retries so a broken step waits for a person.
    """
    failed = [
        run
        for run in context.instance.get_runs(
            RunsFilter(tags=BOOTSTRAP_TAGS, statuses=[DagsterRunStatus.FAILURE])
        )
        if key in (run.asset_selection or ())
    ]
    if len(failed) >= MAX_ATTEMPTS:
        return SkipReason(
            f"The bootstrap's {key.to_user_string()} failed {len(failed)} times (latest run "
            f"{failed[0].run_id}); fix what its log names and materialize it by hand."
        )
    return len(failed) + 1
