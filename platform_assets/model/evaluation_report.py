"""Evaluation stage: the candidate against the champion on rows neither was trained on.

``evaluation_report`` scores both models on the candidate's holdout (the latest rows of the
training set, after everything the candidate saw), from the champion's own holdout start when
that is later, with the same suite (``suite.py``): whole-holdout metrics, slices, calibration and
batch scoring speed. The rules (``gate.py``) give a verdict per rule; the blocking check
``candidate_beats_champion`` turns the report's rule table into the verdict, and
``production_model`` runs only after it passes. Without a champion, the reference is a naive
baseline that gives every payment the training fraud rate, and the absolute floors decide
whether the first model is good enough.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
    asset,
    asset_check,
)
from pydantic import Field

from platform_assets.common.catalog import EVALUATION, catalog
from platform_assets.model.gate import (
    DEFAULT_CRITICAL_RULES,
    GateRules,
    MetricRule,
    Verdict,
    as_records,
    evaluation_start,
    gate,
)
from platform_assets.model.recipe import holdout
from platform_assets.model.suite import (
    ModelEvaluation,
    evaluate,
    label_array,
    operating_point,
    slice_masks,
    timed_scores,
)
from platform_assets.model.tracking import log_evaluation
from resources.alerting import Alerter
from resources.lake import Lake
from resources.model_registry import ModelRegistry

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

GATE_CHECK = "candidate_beats_champion"
BASELINE = "baseline"


class MetricRuleConfig(Config, MetricRule):
    """One critical metric and how the candidate may move it relative to the reference."""


class EvaluationConfig(Config, GateRules):
    """The gate's rules, and how large the HTML report may get."""

    critical: list[MetricRuleConfig] = Field(
        default=DEFAULT_CRITICAL_RULES,
        validate_default=True,
        description="Critical metrics; any rule broken blocks the candidate.",
    )
    report_rows: int = Field(
        default=50_000,
        ge=1_000,
        description="Holdout rows sampled into Evidently's HTML report (it slows down past that).",
    )


@asset(
    kinds={"lightgbm", "mlflow", "evidently"},
    code_version="1",
    io_manager_key="record_io_manager",
    automation_condition=AutomationCondition.eager(),
    **catalog(EVALUATION),
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    candidate_model: dict[str, Any],
    training_set: pl.DataFrame,
    model_registry: ModelRegistry,
    lake: Lake,
) -> Output[dict[str, Any]]:
    """The candidate and the champion scored, rule by rule, on the latest rows neither trained on.

    Plots and Evidently's classification report are written next to the lake's reports and
    logged to the candidate's MLflow run; the results are tags on its registered version.
    """
    # Imported here: artifacts imports LightGBM, which every process loading the code location
    # would otherwise pay for.
    from platform_assets.model.artifacts import write_evaluation_artifacts

    version = candidate_model["version"]
    champion = model_registry.champion()
    start, unseen_by = _evaluation_window(context, candidate_model, champion, model_registry)
    rows, labels = _unseen_rows(training_set, start, unseen_by)
    booster = model_registry.load_booster(version)
    reference, scores, latency = _score(model_registry, booster, candidate_model, champion, rows)
    context.log.info(f"candidate v{version} against {reference} on {rows.height} holdout rows")
    results, verdicts = _judge(rows, labels, scores, reference, config)
    failed = [v.check for v in verdicts if not v.passed]
    folder = Path(lake.root, "reports", "evaluation", f"{model_registry.model_name}-v{version}")
    champion_key = None if champion is None else reference
    artifacts = write_evaluation_artifacts(
        folder,
        labels,
        scores,
        booster,
        champion_key,
        config.operating_precision,
        config.report_rows,
    )
    metrics = results["candidate"].metrics
    threshold = operating_point(labels, scores["candidate"], config.operating_precision)[1]
    operating = (config.operating_precision, threshold)
    log_evaluation(
        model_registry, candidate_model, folder, metrics, reference, failed, rows.height, operating
    )
    report = {
        "candidate_version": version,
        "reference": reference,
        "champion_version": None if champion is None else str(champion.version),
        "passed": not failed,
        "verdicts": as_records(verdicts),
        "metrics": {name: result.metrics for name, result in results.items()},
        "slices": {name: result.slices for name, result in results.items()},
        "holdout_start": start,
        "holdout_rows": rows.height,
        "holdout_frauds": int(labels.sum()),
        "scoring_ms_per_10k_rows": latency,
        "artifacts": [str(path) for path in artifacts],
    }
    return Output(
        report,
        metadata=_catalog_entry(
            report, verdicts, results["candidate"], unseen_by, candidate_model, model_registry
        ),
    )


def _evaluation_window(
    context: AssetExecutionContext,
    candidate_model: dict[str, Any],
    champion: "ModelVersion | None",
    model_registry: ModelRegistry,
) -> tuple[str, str]:
    """Where the rows neither model saw begin, and who they are unseen by.

    ``gate.evaluation_start`` decides; this reads the champion's start from its MLflow run and
    warns when the run records none.
    """
    champion_start = None if champion is None else model_registry.holdout_start(champion)
    if champion is not None and champion_start is None:
        context.log.warning(
            f"champion v{champion.version}'s run records no holdout_start: it is scored on "
            "the candidate's holdout, which it may have been trained on"
        )
    return evaluation_start(
        candidate_model["holdout_start"],
        None if champion is None else str(champion.version),
        champion_start,
    )


def _unseen_rows(
    training_set: pl.DataFrame, start: str, unseen_by: str
) -> tuple[pl.DataFrame, np.ndarray]:
    """The rows from ``start`` on and their labels; an error if they hold no fraud to judge by."""
    rows = holdout(training_set, start)
    labels = label_array(rows)
    if not labels.any():
        raise ValueError(
            f"the rows from {start} ({rows.height}), which {unseen_by} never saw, hold no fraud; "
            "train on more days (training_set config 'days') or wait for newer labels"
        )
    return rows, labels


def _score(
    model_registry: ModelRegistry,
    booster: Any,
    candidate_model: dict[str, Any],
    champion: "ModelVersion | None",
    rows: pl.DataFrame,
) -> tuple[str, dict[str, np.ndarray], dict[str, float]]:
    """The reference's name, each model's holdout scores, and their batch scoring times.

    Without a champion the reference is the baseline, which gives every payment the training
    fraud rate (and has no scoring time).
    """
    scores, latency = {}, {}
    scores["candidate"], latency["candidate"] = timed_scores(booster, rows)
    if champion is None:
        scores[BASELINE] = np.full(rows.height, candidate_model["train_fraud_rate"])
        return BASELINE, scores, latency
    reference = f"champion v{champion.version}"
    champion_booster = model_registry.load_booster(str(champion.version))
    scores[reference], latency[reference] = timed_scores(champion_booster, rows)
    return reference, scores, latency


def _judge(
    rows: pl.DataFrame,
    labels: np.ndarray,
    scores: dict[str, np.ndarray],
    reference: str,
    config: EvaluationConfig,
) -> tuple[dict[str, ModelEvaluation], list[Verdict]]:
    """Each model's results on the suite, and the gate's verdict on every rule."""
    masks = slice_masks(rows)
    results = {
        name: evaluate(labels, s, masks, config.operating_precision) for name, s in scores.items()
    }
    slice_frauds = {name: int(labels[mask].sum()) for name, mask in masks.items()}
    verdicts = gate(results["candidate"], results[reference], slice_frauds, config, config.critical)
    return results, verdicts


def _catalog_entry(
    report: dict[str, Any],
    verdicts: list[Verdict],
    candidate: ModelEvaluation,
    unseen_by: str,
    candidate_model: dict[str, Any],
    model_registry: ModelRegistry,
) -> dict[str, Any]:
    """The report's metadata in the UI: the verdict, the rule table, figures and links."""
    version, reference = report["candidate_version"], report["reference"]
    failed = [v.check for v in verdicts if not v.passed]
    return {
        "verdict": MetadataValue.text("passed" if not failed else f"blocked: {', '.join(failed)}"),
        "gate": verdict_table(verdicts, reference),
        "reference": MetadataValue.text(reference),
        "candidate_version": MetadataValue.text(version),
        "holdout_start": MetadataValue.text(report["holdout_start"]),
        "holdout_unseen_by": MetadataValue.text(unseen_by),
        "holdout_rows": MetadataValue.int(report["holdout_rows"]),
        "holdout_frauds": MetadataValue.int(report["holdout_frauds"]),
        **{
            f"candidate_{m}": MetadataValue.float(round(v, 5)) for m, v in candidate.metrics.items()
        },
        **{
            f"scoring_ms_per_10k_rows ({name})": MetadataValue.float(round(ms, 2))
            for name, ms in report["scoring_ms_per_10k_rows"].items()
        },
        "mlflow_run": MetadataValue.url(
            model_registry.run_url(candidate_model["experiment_id"], candidate_model["run_id"])
        ),
        "model_version": MetadataValue.url(model_registry.version_url(version)),
        **{f"report: {Path(path).stem}": MetadataValue.path(path) for path in report["artifacts"]},
    }


def verdict_table(verdicts: list[Verdict], reference_name: str) -> TableMetadataValue:
    """The gate as Dagster table metadata: metric, verdict, candidate, reference, rule.

    The verdict comes right after the metric: on the asset's overview, at laptop widths, the
    long keys, paths and URLs of the other metadata make the table wider than the page, and only
    the left of this one shows until scrolled. The Checks tab shows it whole.
    """
    return MetadataValue.table(
        records=[
            TableRecord(
                {
                    "metric": v.check,
                    "verdict": "pass" if v.passed else "FAIL",
                    "candidate": round(v.candidate, 4),
                    reference_name: None if v.reference is None else round(v.reference, 4),
                    "rule": v.rule,
                }
            )
            for v in verdicts
        ],
        schema=TableSchema(
            columns=[
                TableColumn("metric", "string"),
                TableColumn("verdict", "string"),
                TableColumn("candidate", "float"),
                TableColumn(reference_name, "float", description="The reference's value."),
                TableColumn("rule", "string", description="What the candidate must reach."),
            ]
        ),
    )


@asset_check(
    asset="evaluation_report",
    name=GATE_CHECK,
    blocking=True,
    description="Every critical rule holds for the candidate against the champion (or, for the "
    "first model, the baseline and the floors). Blocks production_model otherwise.",
)
def candidate_beats_champion(
    evaluation_report: dict[str, Any], alerter: Alerter
) -> AssetCheckResult:
    """The gate's verdict from the report's rule table; a blocked candidate is announced."""
    verdicts = [Verdict(**record) for record in evaluation_report["verdicts"]]
    failed = [v.check for v in verdicts if not v.passed]
    if failed:
        alerter.send(
            title=f"candidate v{evaluation_report['candidate_version']} blocked by the gate",
            message=f"against {evaluation_report['reference']}, failed: {', '.join(failed)}; "
            "the champion keeps serving",
            severity="warning",
            asset="evaluation_report",
            check=GATE_CHECK,
        )
    return AssetCheckResult(
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "candidate_version": MetadataValue.text(evaluation_report["candidate_version"]),
            "reference": MetadataValue.text(evaluation_report["reference"]),
            "failed_rules": MetadataValue.text(", ".join(failed) or "none"),
            "gate": verdict_table(verdicts, evaluation_report["reference"]),
        },
    )
