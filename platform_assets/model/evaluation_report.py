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
# Where ``tracking.log_evaluation`` puts the report's files in the candidate's MLflow run.
ARTIFACT_PATH = "evaluation"


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
    """The report's metadata in the UI: the verdict, the rule table, figures and links.

    The asset's overview shows keys and values in one table whose columns are as wide as their
    longest unbroken word, in about 730 px on a laptop screen. So keys break at spaces
    ("candidate recall_at_precision") and links are Markdown (``links``): the rule table beside
    them then shows whole instead of running off the page.
    """
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
            f"candidate {m}": MetadataValue.float(round(v, 5)) for m, v in candidate.metrics.items()
        },
        **{
            f"scoring ms per 10k rows ({name})": MetadataValue.float(round(ms, 2))
            for name, ms in report["scoring_ms_per_10k_rows"].items()
        },
        **links(model_registry, candidate_model, report["artifacts"]),
    }


def links(
    model_registry: ModelRegistry, candidate_model: dict[str, Any], artifacts: list[str]
) -> dict[str, MetadataValue]:
    """The candidate's MLflow run and registered version, and the evaluation's files, as links.

    Markdown, because the UI shows a URL or path value on one unbroken line, and the run's URL
    alone is wider than the overview leaves for values. A file links to its copy in the run's
    artifacts, where MLflow displays it; the record lists where it lies in the lake.
    """
    run_url = model_registry.run_url(candidate_model["experiment_id"], candidate_model["run_id"])
    version = candidate_model["version"]
    names = [Path(path).name for path in artifacts]
    return {
        "mlflow_run": MetadataValue.md(f"[{candidate_model['run_id']}]({run_url})"),
        "model_version": MetadataValue.md(
            f"[{model_registry.model_name} v{version}]({model_registry.version_url(version)})"
        ),
        "reports": MetadataValue.md(
            " · ".join(f"[{name}]({run_url}/artifacts/{ARTIFACT_PATH}/{name})" for name in names)
        ),
    }


def verdict_table(verdicts: list[Verdict], reference_name: str) -> TableMetadataValue:
    """The gate as Dagster table metadata: metric, verdict, and the candidate against the rule.

    The last column is the candidate's value and the rule with the reference's value filled in
    (``0.0549 ≥ 0.0062 + 0.002``). The asset's overview at laptop widths leaves this table about
    330 px: room for three narrow columns, where the candidate, reference and rule in columns of
    their own were cut off. There the last column wraps, one number a line.
    """
    return MetadataValue.table(
        records=[
            TableRecord(
                {
                    "metric": v.check,
                    "verdict": "pass" if v.passed else "FAIL",
                    "candidate": f"{v.candidate:.4f} {_filled_in(v)}",
                }
            )
            for v in verdicts
        ],
        schema=TableSchema(
            columns=[
                TableColumn("metric", "string"),
                TableColumn("verdict", "string"),
                TableColumn(
                    "candidate",
                    "string",
                    description="The candidate's value and the rule it must meet, with "
                    f"{reference_name}'s value in place of 'reference'.",
                ),
            ]
        ),
    )


def _filled_in(verdict: Verdict) -> str:
    """The rule with the reference's value for the word "reference" (``gate.relative_rule``).

    A no-break space keeps each operator with its number when the column wraps.
    """
    rule = verdict.rule
    if verdict.reference is not None:
        rule = rule.replace("reference", f"{verdict.reference:.4f}")
    for operator in "≥≤+−":
        rule = rule.replace(f"{operator} ", f"{operator}\N{NO-BREAK SPACE}")
    return rule


@asset_check(
    asset="evaluation_report",
    name=GATE_CHECK,
    blocking=True,
    # Requested with every new report, so canary_release (which waits for this check to pass)
    # is never left waiting for a check that automation did not run.
    automation_condition=AutomationCondition.eager(),
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
