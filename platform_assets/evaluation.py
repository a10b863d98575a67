"""Evaluation stage: the candidate against the champion on rows neither was trained on.

``evaluation_report`` scores both models on the candidate's holdout (the latest rows of the
training set, after everything the candidate saw), from the champion's own holdout start when
that is later, with the same suite: whole-holdout metrics, slices, calibration and batch
scoring speed. The blocking check ``candidate_beats_champion`` turns the report's rule table
into the verdict; ``production_model`` runs only after it passes.
Without a champion, the reference is a naive baseline that gives every payment the training
fraud rate, and the absolute floors decide whether the first model is good enough.
"""

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    MetadataValue,
    Output,
    asset,
    asset_check,
)
from pydantic import Field

from platform_assets.evaluation_artifacts import (
    write_classification_report,
    write_curves,
    write_feature_importance,
)
from platform_assets.model_metrics import (
    GateConfig,
    Verdict,
    as_records,
    evaluate,
    gate,
    label_array,
    operating_point,
    slice_masks,
    verdict_table,
)
from platform_assets.model_training import fraud_scores, holdout
from resources.lake import Lake
from resources.model_registry import ModelRegistry

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

GATE_CHECK = "candidate_beats_champion"
BASELINE = "baseline"


class EvaluationConfig(GateConfig):
    """The gate's rules, and how large the HTML report may get."""

    report_rows: int = Field(
        default=50_000,
        ge=1_000,
        description="Holdout rows sampled into Evidently's HTML report (it slows down past that).",
    )


def timed_scores(booster: lgb.Booster, rows: pl.DataFrame) -> tuple[np.ndarray, float]:
    """The booster's scores for ``rows`` and the batch scoring time in ms per 10,000 rows."""
    started = time.perf_counter()
    scores = fraud_scores(booster, rows)
    return scores, (time.perf_counter() - started) * 1000 * 10_000 / rows.height


def evaluation_start(
    context: AssetExecutionContext,
    candidate_model: dict[str, Any],
    champion: "ModelVersion | None",
    model_registry: ModelRegistry,
) -> tuple[str, str]:
    """Where the rows neither model saw begin, and who they are unseen by.

    A champion trained on a later window than the candidate's has seen the start of the
    candidate's holdout; scored there, it would look better than it is and block fair
    candidates. So the evaluation starts at the later of the two holdout starts.
    """
    start = candidate_model["holdout_start"]
    if champion is None:
        return start, "the candidate"
    champion_start = model_registry.holdout_start(champion)
    if champion_start is None:
        context.log.warning(
            f"champion v{champion.version}'s run records no holdout_start: it is scored on "
            "the candidate's holdout, which it may have been trained on"
        )
        return start, "the candidate"
    unseen_by = f"the candidate and champion v{champion.version}"
    if datetime.fromisoformat(champion_start) > datetime.fromisoformat(start):
        return champion_start, unseen_by
    return start, unseen_by


@asset(
    group_name="evaluation",
    owners=["team:ml-platform"],
    kinds={"lightgbm", "mlflow", "evidently"},
    tags={"flywheel/stage": "evaluation"},
    code_version="1",
    io_manager_key="record_io_manager",
    automation_condition=AutomationCondition.eager(),
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
    version = candidate_model["version"]
    champion = model_registry.champion()
    start, unseen_by = evaluation_start(context, candidate_model, champion, model_registry)
    rows = holdout(training_set, start)
    labels = label_array(rows)
    if not labels.any():
        raise ValueError(
            f"the rows from {start} ({rows.height}), which {unseen_by} never saw, hold no fraud; "
            "train on more days (training_set config 'days') or wait for newer labels"
        )
    booster = model_registry.load_booster(version)
    scores, latency = {}, {}
    scores["candidate"], latency["candidate"] = timed_scores(booster, rows)
    if champion is None:
        reference = BASELINE
        scores[reference] = np.full(labels.size, candidate_model["train_fraud_rate"])
    else:
        reference = f"champion v{champion.version}"
        champion_booster = model_registry.load_booster(str(champion.version))
        scores[reference], latency[reference] = timed_scores(champion_booster, rows)
    context.log.info(f"candidate v{version} against {reference} on {rows.height} holdout rows")

    masks = slice_masks(rows)
    results = {name: evaluate(labels, s, masks, config) for name, s in scores.items()}
    verdicts = gate(
        results["candidate"],
        results[reference],
        {name: int(labels[mask].sum()) for name, mask in masks.items()},
        config,
    )
    passed = all(v.passed for v in verdicts)

    folder = Path(lake.root, "reports", "evaluation", f"{model_registry.model_name}-v{version}")
    folder.mkdir(parents=True, exist_ok=True)
    _, threshold = operating_point(labels, scores["candidate"], config.operating_precision)
    artifacts = [
        *write_curves(folder, labels, scores),
        write_feature_importance(folder, booster),
        write_classification_report(
            folder,
            labels,
            scores["candidate"],
            None if champion is None else scores[reference],
            threshold,
            config.report_rows,
        ),
    ]
    run_id = candidate_model["run_id"]
    client = model_registry.client()
    client.log_artifacts(run_id, str(folder), "evaluation")
    for metric, value in results["candidate"].metrics.items():
        client.log_metric(run_id, f"holdout_{metric}", value)
    failed = [v.check for v in verdicts if not v.passed]
    model_registry.set_version_tags(
        version,
        {
            "eval.verdict": "passed" if passed else "blocked",
            "eval.reference": reference,
            "eval.failed_rules": ", ".join(failed) or "none",
            "eval.holdout_rows": str(rows.height),
            **{f"eval.{m}": f"{v:.6f}" for m, v in results["candidate"].metrics.items()},
        },
    )

    report = {
        "candidate_version": version,
        "reference": reference,
        "champion_version": None if champion is None else str(champion.version),
        "passed": passed,
        "verdicts": as_records(verdicts),
        "metrics": {name: result.metrics for name, result in results.items()},
        "slices": {name: result.slices for name, result in results.items()},
        "holdout_start": start,
        "holdout_rows": rows.height,
        "holdout_frauds": int(labels.sum()),
        "scoring_ms_per_10k_rows": latency,
        "artifacts": [str(path) for path in artifacts],
    }
    candidate = results["candidate"].metrics
    return Output(
        report,
        metadata={
            "verdict": MetadataValue.text("passed" if passed else f"blocked: {', '.join(failed)}"),
            "gate": verdict_table(verdicts, reference),
            "reference": MetadataValue.text(reference),
            "candidate_version": MetadataValue.text(version),
            "holdout_start": MetadataValue.text(start),
            "holdout_unseen_by": MetadataValue.text(unseen_by),
            "holdout_rows": MetadataValue.int(rows.height),
            "holdout_frauds": MetadataValue.int(int(labels.sum())),
            **{f"candidate_{m}": MetadataValue.float(round(v, 5)) for m, v in candidate.items()},
            **{
                f"scoring_ms_per_10k_rows ({name})": MetadataValue.float(round(ms, 2))
                for name, ms in latency.items()
            },
            "mlflow_run": MetadataValue.url(
                model_registry.run_url(candidate_model["experiment_id"], run_id)
            ),
            "model_version": MetadataValue.url(model_registry.version_url(version)),
            **{f"report: {path.stem}": MetadataValue.path(str(path)) for path in artifacts},
        },
    )


@asset_check(
    asset=evaluation_report,
    name=GATE_CHECK,
    blocking=True,
    description="Every critical rule holds for the candidate against the champion (or, for the "
    "first model, the baseline and the floors). Blocks production_model otherwise.",
)
def candidate_beats_champion(evaluation_report: dict[str, Any]) -> AssetCheckResult:
    """The gate's verdict from the report's rule table."""
    verdicts = [Verdict(**record) for record in evaluation_report["verdicts"]]
    failed = [v.check for v in verdicts if not v.passed]
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
