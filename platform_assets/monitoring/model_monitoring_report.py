"""Monitoring stage: how the champion is doing on a day, and whether to warn or retrain.

The day's predictions (from the prediction log) against what the champion was trained on: feature
drift per feature and prediction drift with the ingestion gate's PSI, performance estimated from
the calibrated scores (``performance.py``) and, once enough labels have arrived, the realized
performance next to it, and what the decisions cost. Every figure is numeric metadata, so each
one is a time series over the partitions in the UI. The checks say ok, warn or act per
``MonitoringPolicy``; ``retraining_sensor`` reads the act verdicts.
"""

import datetime
import json
import tempfile
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
)

from platform_assets.common.catalog import DAILY_FRESHNESS, MONITORING, catalog
from platform_assets.common.keys import (
    FRAUD_LABELS,
    MODEL_MONITORING_REPORT,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.markdown import to_markdown
from platform_assets.common.partitions import daily_partitions, partition_day
from platform_assets.ingestion.drift import binned_psi, write_drift_report
from platform_assets.monitoring.performance import (
    business_metrics,
    estimated_performance,
    expected_label_share,
    label_delays,
    realized_performance,
)
from platform_assets.monitoring.reference import (
    REFERENCE_FILE,
    REFERENCE_SAMPLE_FILE,
    calibrate,
)
from platform_assets.monitoring.verdicts import CHECKS, Verdict, as_records, judge
from resources.alerting import Alerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.lake import Lake
from resources.model_registry import OPERATING_PRECISION_TAG, PROMOTED_AT_TAG, ModelRegistry
from resources.monitoring_policy import MonitoringPolicy
from resources.prediction_log import PredictionLog

# Matured days whose chargebacks tell how long labels take to arrive.
DELAY_HISTORY_DAYS = 14
# Chargebacks of a day are delivered 30 minutes after it ends (the source's schedule).
LABELS_LAND_AFTER = datetime.timedelta(days=1, minutes=30)
_SEVERITY = {"warn": AssetCheckSeverity.WARN, "act": AssetCheckSeverity.ERROR}


@asset(
    partitions_def=daily_partitions,
    kinds={"evidently", "polars"},
    code_version="1",
    io_manager_key="record_io_manager",
    # ingestion_job reports on each new day after its scores.
    freshness_policy=DAILY_FRESHNESS,
    check_specs=[
        AssetCheckSpec(name, asset=MODEL_MONITORING_REPORT, partitions_def=daily_partitions)
        for name in CHECKS
    ],
    **catalog(MONITORING),
)
def model_monitoring_report(
    context: AssetExecutionContext,
    champion_scores: dict[str, Any],
    prediction_log: PredictionLog,
    model_registry: ModelRegistry,
    lake: Lake,
    clock: Clock,
    label_policy: LabelPolicy,
    monitoring_policy: MonitoringPolicy,
    alerter: Alerter,
):
    """The champion on a day: drift, estimated and realized performance, business cost, verdicts.

    Re-materialized by ``monitoring_freshness_sensor`` once the day's labels have arrived, so
    the realized figures stand next to the estimate they can be compared with.
    """
    day, version = context.partition_key, champion_scores["model_version"]
    champion = model_registry.version(version)
    rows = prediction_log.read(day)
    if rows.is_empty():
        raise LookupError(f"the prediction log holds no batch rows for {day}: run champion_scores")
    with tempfile.TemporaryDirectory() as folder:
        reference = json.loads(
            model_registry.run_artifact(champion, REFERENCE_FILE, folder).read_text()
        )
        sample = pl.read_parquet(
            model_registry.run_artifact(champion, REFERENCE_SAMPLE_FILE, folder)
        )
    report = _figures(day, rows, reference, champion, lake, clock, label_policy, monitoring_policy)
    verdicts = judge(report, reference["holdout"], monitoring_policy)
    _announce(verdicts, version, day, alerter)
    report["verdicts"] = as_records(verdicts)
    metadata = _catalog_entry(report, verdicts, model_registry)
    if monitoring_policy.drift_report_rows:
        path = lake.report_path("monitoring", f"{model_registry.model_name}-{day}.html")
        features = list(reference["features"])
        write_drift_report(
            rows,
            sample,
            monitoring_policy.drift_report_rows,
            path,
            numeric_columns=features,
            categorical_columns=(),
        )
        metadata["evidently_report"] = MetadataValue.path(str(path))
        metadata["evidently_report_url"] = MetadataValue.url(path.as_uri())
    yield Output(report, metadata=metadata)
    yield from (_check_result(verdict) for verdict in verdicts)


def _announce(verdicts: list[Verdict], version: str, day: str, alerter: Alerter) -> None:
    """Every warn and act verdict as an alert."""
    for verdict in verdicts:
        if verdict.level in _SEVERITY:
            alerter.send(
                title=f"champion v{version} on {day}: {verdict.check} {verdict.level}",
                message=f"{verdict.metric} {verdict.reason}",
                severity="error" if verdict.level == "act" else "warning",
                asset="model_monitoring_report",
                partition=day,
                check=verdict.check,
            )


def _check_result(verdict: Verdict) -> AssetCheckResult:
    """A verdict as its check's result: warn is yellow, act red, ok and pending pass."""
    return AssetCheckResult(
        check_name=verdict.check,
        passed=verdict.level not in _SEVERITY,
        severity=_SEVERITY.get(verdict.level, AssetCheckSeverity.WARN),
        metadata={
            "metric": verdict.metric,
            "level": verdict.level,
            "reason": verdict.reason,
            "value": MetadataValue.float(float("nan") if verdict.value is None else verdict.value),
        },
    )


def _figures(
    day: str,
    rows: pl.DataFrame,
    reference: dict[str, Any],
    champion: Any,
    lake: Lake,
    clock: Clock,
    label_policy: LabelPolicy,
    policy: MonitoringPolicy,
) -> dict[str, Any]:
    """The day's drift, performance and business figures, and when its labels will be in."""
    now = clock.now()
    scores = rows["score"].to_numpy()
    probabilities = calibrate(scores, reference["calibration"])
    labels, coverage, due = _known_labels(day, rows, lake, now, label_policy, policy)
    realized = None
    if labels is not None:
        realized = realized_performance(
            labels, scores, float(champion.tags[OPERATING_PRECISION_TAG])
        )
    promoted = datetime.datetime.fromisoformat(champion.tags[PROMOTED_AT_TAG])
    return {
        "day": day,
        "model_version": str(champion.version),
        "rows": rows.height,
        "feature_psi": {
            name: binned_psi(profile, rows[name]) for name, profile in reference["features"].items()
        },
        "prediction_psi": binned_psi(reference["scores"], rows["score"]),
        "estimated": estimated_performance(scores, probabilities, float(rows["threshold"][0])),
        "label_coverage": coverage,
        "realized": realized,
        "realized_frauds": 0 if labels is None else int(labels.sum()),
        "realized_due": None if due is None else due.isoformat(),
        "business_basis": "expected" if labels is None else "labels",
        "business": business_metrics(
            rows["amount"].to_numpy(),
            rows["decision"].to_numpy(),
            probabilities if labels is None else labels,
            policy.cost_per_missed_fraud,
            policy.cost_per_false_alarm,
        ),
        "champion_age_days": (now - promoted).total_seconds() / 86_400,
    }


def _known_labels(
    day: str,
    rows: pl.DataFrame,
    lake: Lake,
    now: datetime.datetime,
    label_policy: LabelPolicy,
    policy: MonitoringPolicy,
) -> tuple[np.ndarray | None, float, datetime.datetime | None]:
    """The day's labels if enough have arrived, the expected share arrived, and when it will be.

    How long labels take comes from the chargebacks of matured days before this one; without
    that history a day's labels count as complete after ``label_policy.maturity_days``.
    """
    first = partition_day(day)
    label_days = [
        (first + datetime.timedelta(days=n)).isoformat()
        for n in range(1, label_policy.maturity_days + 1)
        if datetime.datetime.combine(
            first + datetime.timedelta(days=n), datetime.time(), tzinfo=datetime.UTC
        )
        + LABELS_LAND_AFTER
        <= now
    ]
    reported = lake.stored_partitions(FRAUD_LABELS, label_days)
    age = len(reported)
    delays = _delay_history(first, lake, label_policy.maturity_days)
    needed = next(
        (
            a
            for a in range(1, label_policy.maturity_days + 1)
            if expected_label_share(delays, a, label_policy.maturity_days)
            >= policy.min_label_coverage
        ),
        label_policy.maturity_days,
    )
    due = (
        datetime.datetime.combine(
            first + datetime.timedelta(days=needed), datetime.time(), tzinfo=datetime.UTC
        )
        + LABELS_LAND_AFTER
    )
    coverage = expected_label_share(delays, age, label_policy.maturity_days)
    if coverage < policy.min_label_coverage:
        return None, coverage, due
    charged = lake.scan_partitions(FRAUD_LABELS, reported).select(
        pl.col("transaction_id").cast(pl.String)
    )
    labels = rows["transaction_id"].is_in(charged.collect().to_series().implode()).to_numpy()
    return labels.astype(np.int8), coverage, None


def _delay_history(first: datetime.date, lake: Lake, maturity_days: int) -> np.ndarray:
    """Label delays (days) of the chargebacks of the matured days before ``first``."""
    last_matured = first - datetime.timedelta(days=maturity_days)
    days = [
        (last_matured - datetime.timedelta(days=n)).isoformat() for n in range(DELAY_HISTORY_DAYS)
    ]
    stored = lake.stored_partitions(VALIDATED_TRANSACTIONS, days)
    if not stored:
        return np.array([], dtype=np.int64)
    report_days = [
        (datetime.date.fromisoformat(min(stored)) + datetime.timedelta(days=n)).isoformat()
        for n in range(1, DELAY_HISTORY_DAYS + maturity_days + 1)
    ]
    return label_delays(
        lake.scan_partitions(VALIDATED_TRANSACTIONS, stored),
        lake.scan_partitions(FRAUD_LABELS, lake.stored_partitions(FRAUD_LABELS, report_days)),
    )


def _catalog_entry(
    report: dict[str, Any], verdicts: list[Verdict], model_registry: ModelRegistry
) -> dict[str, Any]:
    """Every figure as numeric metadata (a time series in the UI), and the verdict table."""
    figures = {
        "prediction_psi": report["prediction_psi"],
        "feature_psi_max": max(report["feature_psi"].values()),
        **{f"psi: {name}": value for name, value in report["feature_psi"].items()},
        **report["estimated"],
        **(report["realized"] or {}),
        "label_coverage": report["label_coverage"],
        **{f"business: {name}": value for name, value in report["business"].items()},
        "champion_age_days": report["champion_age_days"],
    }
    table = [
        {
            "check": v.check,
            "metric": v.metric,
            "value": v.value,
            "level": v.level,
            "reason": v.reason,
        }
        for v in verdicts
    ]
    return {
        "dagster/row_count": MetadataValue.int(report["rows"]),
        **{name: MetadataValue.float(round(float(value), 6)) for name, value in figures.items()},
        "champion_version": MetadataValue.text(report["model_version"]),
        "model_version": MetadataValue.url(model_registry.version_url(report["model_version"])),
        "realized_status": MetadataValue.text(
            f"labels due {report['realized_due']}"
            if report["realized"] is None
            else f"{report['realized_frauds']} labelled frauds"
        ),
        "realized_due": MetadataValue.text(report["realized_due"] or ""),
        "business_basis": MetadataValue.text(report["business_basis"]),
        "verdicts": MetadataValue.json(as_records(verdicts)),
        "checks": MetadataValue.md(to_markdown(pl.DataFrame(table))),
    }
