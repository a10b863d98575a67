"""Automation for monitoring: retrain when the champion's checks say act, refresh what is stale.

``retraining_sensor`` reads each new ``model_monitoring_report`` and, on an act verdict about the
model that still serves, asks for a new ``training_set``; declarative automation then trains,
gates and promotes. ``monitoring_freshness_sensor`` re-runs a day's report once its labels are
due (so the realized figures join the estimate) and rematerializes ``online_features`` and the
report when their freshness policies are past their fail window.
"""

import datetime
import json

from dagster import (
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from platform_assets.common.keys import (
    CHAMPION_SCORES,
    MODEL_MONITORING_REPORT,
    ONLINE_FEATURES,
    TRAINING_SET,
)
from resources.alerting import Alerter
from resources.clock import Clock
from resources.model_registry import ModelRegistry
from resources.monitoring_policy import MonitoringPolicy

# Reports read per tick; more wait for the next tick (the cursor keeps the place).
REPORTS_PER_TICK = 50
# Days back the freshness sensor looks for reports still waiting for their labels.
LABEL_LOOKBACK_DAYS = 45


def _cursor(context: SensorEvaluationContext) -> dict:
    return json.loads(context.cursor) if context.cursor else {"after": None, "requested_at": None}


@sensor(
    asset_selection=[TRAINING_SET],
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a new training_set when a model_monitoring_report check of the serving "
    "champion reaches its act level; one request per cooldown (MonitoringPolicy).",
)
def retraining_sensor(
    context: SensorEvaluationContext,
    clock: Clock,
    model_registry: ModelRegistry,
    monitoring_policy: MonitoringPolicy,
    alerter: Alerter,
) -> SensorResult | SkipReason:
    """Turn the first act verdict on the serving champion into one retraining request."""
    cursor = _cursor(context)
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=MODEL_MONITORING_REPORT, after_storage_id=cursor["after"]),
        limit=REPORTS_PER_TICK,
        ascending=True,
    ).records
    if not records:
        return SkipReason("No new model_monitoring_report since the last tick.")
    now = clock.now()
    champion = model_registry.champion()
    serving = None if champion is None else str(champion.version)
    requests, skipped = [], []
    for record in records:
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        version = str(metadata["champion_version"].value)
        day = record.partition_key
        for verdict in [v for v in metadata["verdicts"].value if v["level"] == "act"]:  # type: ignore[union-attr]
            trigger = f"{verdict['check']} on {day} ({verdict['metric']} {verdict['reason']})"
            if version != serving:
                skipped.append(f"{trigger}: judged v{version}, v{serving} serves now")
                continue
            if _cooling_down(cursor["requested_at"], now, monitoring_policy):
                skipped.append(
                    f"{trigger}: cooldown ({monitoring_policy.retraining_cooldown_hours:g} h)"
                )
                alerter.send(
                    title=f"retraining skipped: {verdict['check']} on {day}",
                    message=f"{trigger}; a retraining was requested at {cursor['requested_at']}",
                    severity="info",
                    check=verdict["check"],
                    partition=day,
                )
                continue
            requests.append(
                _retraining_request(verdict, record.storage_id, day, version, monitoring_policy)
            )
            cursor["requested_at"] = now.isoformat()
            alerter.send(
                title=f"retraining requested: {verdict['check']} on {day}",
                message=f"champion v{version}: {trigger}",
                severity="warning",
                check=verdict["check"],
                partition=day,
            )
    cursor["after"] = records[-1].storage_id
    reason = "; ".join(skipped) or f"{len(records)} new report(s), no act verdict"
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else SkipReason(reason),
    )


def _cooling_down(
    requested_at: str | None, now: datetime.datetime, policy: MonitoringPolicy
) -> bool:
    """Whether the last retraining request is more recent than the cooldown."""
    if requested_at is None:
        return False
    since = now - datetime.datetime.fromisoformat(requested_at)
    return since < datetime.timedelta(hours=policy.retraining_cooldown_hours)


def _retraining_request(
    verdict: dict, report_id: int, day: str | None, version: str, policy: MonitoringPolicy
) -> RunRequest:
    """A training_set over the policy's window up to the newest matured day, tagged with why.

    The run key names the report (its storage id): a re-run report, once labels are due, is a
    new trigger, while a lost cursor repeats the key, which Dagster launches only once.
    """
    return RunRequest(
        run_key=f"retrain:{verdict['check']}:{day}:v{version}:{report_id}",
        asset_selection=[TRAINING_SET],
        run_config={"ops": {"training_set": {"config": {"days": policy.retraining_window_days}}}},
        tags={
            "flywheel/trigger": "monitoring",
            "flywheel/check": verdict["check"],
            "flywheel/metric": verdict["metric"],
            "flywheel/value": f"{verdict['value']:.6g}",
            "flywheel/threshold": f"{verdict['threshold']:.6g}",
            "flywheel/day": str(day),
            "flywheel/champion_version": version,
        },
    )


@sensor(
    asset_selection=[MODEL_MONITORING_REPORT, CHAMPION_SCORES, ONLINE_FEATURES],
    minimum_interval_seconds=300,
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
