"""Automation for monitoring: retrain when the champion's checks say act, refresh what is stale.

``retraining_sensor`` reads each new ``model_monitoring_report`` and, on an act verdict about the
model that still serves, asks for a new ``training_set``; declarative automation then trains,
gates and promotes. ``monitoring_freshness_sensor`` re-runs a day's report once its labels are
due (so the realized figures join the estimate) and rematerializes ``online_features`` and the
report when their freshness policies are past their fail window.
"""

import datetime
import json
from collections.abc import Sequence

from dagster import (
    AssetPartitionStatus,
    AssetRecordsFilter,
    DagsterInstance,
    DefaultSensorStatus,
    RunRecord,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from platform_assets.common.keys import (
    CHAMPION_AGE,
    CHAMPION_SCORES,
    FRAUD_LABELS,
    MODEL_MONITORING_REPORT,
    ONLINE_FEATURES,
    TRAINING_SET,
)
from platform_assets.common.partitions import daily_partitions, label_report_days
from resources.alerting import Alerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry
from resources.monitoring_policy import MonitoringPolicy
from sensors.ingestion import UNFINISHED_RUNS

# Reports read per tick; more wait for the next tick (the cursor keeps the place).
REPORTS_PER_TICK = 50
# Days back the freshness sensor looks for reports still waiting for their labels.
LABEL_LOOKBACK_DAYS = 45


def _cursor(context: SensorEvaluationContext) -> dict:
    """Where the sensor is: the last report read, the last request, a trigger waiting for data."""
    empty = {"after": None, "requested_at": None, "pending": None}
    return {**empty, **json.loads(context.cursor)} if context.cursor else empty


@sensor(
    asset_selection=[TRAINING_SET],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a new training_set when a model_monitoring_report check of the serving "
    "champion reaches its act level, once enough labelled days follow the change; one request "
    "per cooldown (MonitoringPolicy).",
)
def retraining_sensor(
    context: SensorEvaluationContext,
    clock: Clock,
    model_registry: ModelRegistry,
    monitoring_policy: MonitoringPolicy,
    label_policy: LabelPolicy,
    alerter: Alerter,
) -> SensorResult | SkipReason:
    """Hold the first act verdict on the serving champion as a trigger; request when it is due."""
    cursor = _cursor(context)
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=MODEL_MONITORING_REPORT, after_storage_id=cursor["after"]),
        limit=REPORTS_PER_TICK,
        ascending=True,
    ).records
    if not records and cursor["pending"] is None:
        return SkipReason("No new model_monitoring_report since the last tick.")
    now = clock.now()
    in_flight = context.instance.get_run_records(
        RunsFilter(tags={"dagster/sensor_name": "retraining_sensor"}, statuses=UNFINISHED_RUNS),
        limit=1,
    )
    champion = model_registry.champion()
    serving = None if champion is None else str(champion.version)
    skipped = []
    for record in records:
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        version = str(metadata["champion_version"].value)
        for verdict in [v for v in metadata["verdicts"].value if v["level"] == "act"]:  # type: ignore[union-attr]
            trigger = {
                **verdict,
                "day": record.partition_key,
                "version": version,
                "report_id": record.storage_id,
            }
            why = _not_a_new_trigger(trigger, serving, cursor, now, monitoring_policy, in_flight)
            if why:
                skipped.append(f"{_describe(trigger)}: {why}")
                if trigger["version"] != serving:
                    continue  # a report of a replaced model: nothing to act on, nothing to say
                alerter.try_send(
                    title=f"retraining skipped: {trigger['check']} on {trigger['day']}",
                    message=f"{_describe(trigger)}: {why}",
                    severity="info",
                    check=trigger["check"],
                    partition=trigger["day"],
                )
                continue
            cursor["pending"] = trigger
    if records:
        cursor["after"] = records[-1].storage_id
    requests = _due_request(
        context.instance, cursor, serving, now, monitoring_policy, label_policy, skipped, alerter
    )
    reason = "; ".join(skipped) or f"{len(records)} new report(s), no act verdict"
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else SkipReason(reason),
    )


def _describe(trigger: dict) -> str:
    return f"{trigger['check']} on {trigger['day']} ({trigger['metric']} {trigger['reason']})"


def _not_a_new_trigger(
    trigger: dict,
    serving: str | None,
    cursor: dict,
    now: datetime.datetime,
    policy: MonitoringPolicy,
    in_flight: Sequence[RunRecord],
) -> str | None:
    """Why an act verdict starts no retraining (None: it does)."""
    if trigger["version"] != serving:
        return f"judged v{trigger['version']}, v{serving} serves now"
    if cursor["pending"] is not None:
        return f"a retraining is already due for {_describe(cursor['pending'])}"
    if in_flight:
        # The cooldown counts from the request; a busy queue can hold the run past it.
        run = in_flight[0].dagster_run
        return f"the last retraining's run {run.run_id[:8]} is still {run.status.value.lower()}"
    if cursor["requested_at"] is not None:
        since = now - datetime.datetime.fromisoformat(cursor["requested_at"])
        if since < datetime.timedelta(hours=policy.retraining_cooldown_hours):
            return (
                f"cooldown: a retraining was requested at {cursor['requested_at']} "
                f"({policy.retraining_cooldown_hours:g} h)"
            )
    return None


def _due_request(
    instance: DagsterInstance,
    cursor: dict,
    serving: str | None,
    now: datetime.datetime,
    policy: MonitoringPolicy,
    label_policy: LabelPolicy,
    skipped: list[str],
    alerter: Alerter,
) -> list[RunRequest]:
    """The pending trigger's request once enough labelled days follow its onset.

    A changed world is learned from the days after the change: a drift's retraining waits
    until ``min_days_after_change`` days from the report's day have matured labels, and trains
    on those days. The champion's age has no onset: it retrains at once, over the usual window.
    """
    trigger = cursor["pending"]
    if trigger is None:
        return []
    if trigger["version"] != serving:
        skipped.append(f"dropped {_describe(trigger)}: v{serving} serves now")
        cursor["pending"] = None
        return []
    newest = (now - datetime.timedelta(days=label_policy.maturity_days + 1)).date()
    after = (newest - datetime.date.fromisoformat(trigger["day"])).days + 1
    immediate = trigger["check"] == CHAMPION_AGE or policy.min_days_after_change == 0
    if not immediate and after < policy.min_days_after_change:
        skipped.append(
            f"retraining for {_describe(trigger)} waits for labelled days after the change: "
            f"{max(after, 0)} of {policy.min_days_after_change}"
        )
        return []
    days = policy.retraining_window_days if immediate else after
    # The clock says the labels are due; the training set needs them ingested (a busy queue
    # ingests the last days minutes after they landed).
    first = newest - datetime.timedelta(days=days - 1)
    reported = label_report_days(first, newest, label_policy.maturity_days)
    status = instance.get_status_by_partition(FRAUD_LABELS, reported, daily_partitions) or {}
    if missing := [day for day in reported if status.get(day) != AssetPartitionStatus.MATERIALIZED]:
        skipped.append(
            f"retraining for {_describe(trigger)} waits for the labels reported on "
            f"{', '.join(missing)} to be ingested"
        )
        return []
    cursor["pending"], cursor["requested_at"] = None, now.isoformat()
    alerter.try_send(
        title=f"retraining requested: {trigger['check']} on {trigger['day']}",
        message=f"champion v{trigger['version']}: {_describe(trigger)}; training on the {days} "
        f"days up to {newest}",
        severity="warning",
        check=trigger["check"],
        partition=trigger["day"],
    )
    return [_retraining_request(trigger, newest, days)]


def _retraining_request(trigger: dict, last_day: datetime.date, days: int) -> RunRequest:
    """A training_set over ``days`` days up to ``last_day``, tagged with why.

    The run key names the report (its storage id): a re-run report, once labels are due, is a
    new trigger, while a lost cursor repeats the key, which Dagster launches only once.
    """
    return RunRequest(
        run_key=f"retrain:{trigger['check']}:{trigger['day']}:v{trigger['version']}:"
        f"{trigger['report_id']}",
        asset_selection=[TRAINING_SET],
        run_config={
            "ops": {"training_set": {"config": {"last_day": last_day.isoformat(), "days": days}}}
        },
        tags={
            "flywheel/trigger": "monitoring",
            "flywheel/check": trigger["check"],
            "flywheel/metric": trigger["metric"],
            "flywheel/value": f"{trigger['value']:.6g}",
            "flywheel/threshold": f"{trigger['threshold']:.6g}",
            "flywheel/day": str(trigger["day"]),
            "flywheel/champion_version": trigger["version"],
            "flywheel/window": f"{days} days to {last_day}",
        },
    )


@sensor(
    asset_selection=[MODEL_MONITORING_REPORT, CHAMPION_SCORES, ONLINE_FEATURES],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Re-runs a day's model_monitoring_report once its labels are due, and "
    "rematerializes online_features or the latest report past their freshness policy.",
)
def monitoring_freshness_sensor(context: SensorEvaluationContext, clock: Clock) -> SensorResult:
    """Ask for the reports whose labels are due, and for what is past its fail window."""
    now = clock.now()
    requests = _labels_due(context, now) + _stale(context, now)
    return SensorResult(
        run_requests=requests,
        skip_reason=None if requests else SkipReason("No report awaits due labels; all fresh."),
    )


def _labels_due(context: SensorEvaluationContext, now: datetime.datetime) -> list[RunRequest]:
    """A report re-run per recent day whose realized figures wait for labels now due."""
    days = [
        (now.date() - datetime.timedelta(days=n)).isoformat() for n in range(1, LABEL_LOOKBACK_DAYS)
    ]
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=MODEL_MONITORING_REPORT, asset_partitions=days),
        limit=LABEL_LOOKBACK_DAYS * 4,
    ).records
    latest = {}
    for record in records:  # newest first
        latest.setdefault(record.partition_key, record)
    requests = []
    for day, record in sorted(latest.items()):
        due = record.asset_materialization.metadata["realized_due"].value  # type: ignore[union-attr]
        if due and datetime.datetime.fromisoformat(str(due)) <= now:
            requests.append(
                RunRequest(
                    run_key=f"labels:{day}:{due}",
                    partition_key=day,
                    asset_selection=[MODEL_MONITORING_REPORT],
                    tags={"flywheel/trigger": "labels", "flywheel/day": str(day)},
                )
            )
    return requests


def _stale(context: SensorEvaluationContext, now: datetime.datetime) -> list[RunRequest]:
    """online_features, or the latest day's scores and report, once past their fail window."""
    requests = []
    graph = context.repository_def.asset_graph  # type: ignore[union-attr]
    for key in (ONLINE_FEATURES, MODEL_MONITORING_REPORT):
        policy = graph.get(key).freshness_policy
        event = context.instance.get_latest_materialization_event(key)
        if policy is None or event is None:
            continue
        age = now - datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC)
        fail = policy.fail_window.to_timedelta()  # type: ignore[attr-defined]
        if age < fail:
            continue
        hour = now.strftime("%Y-%m-%dT%H")
        if key == ONLINE_FEATURES:
            selection, partition = [ONLINE_FEATURES], None
        else:
            selection, partition = (
                [CHAMPION_SCORES, MODEL_MONITORING_REPORT],
                (now.date() - datetime.timedelta(days=1)).isoformat(),
            )
        requests.append(
            RunRequest(
                run_key=f"stale:{key.to_user_string()}:{hour}",
                partition_key=partition,
                asset_selection=selection,
                tags={"flywheel/trigger": "freshness", "flywheel/stale_for": f"{age}"},
            )
        )
    return requests
