"""The evaluation suite and the promotion rules of the champion/challenger gate.

Both models are scored on the same holdout rows by the same functions; the gate compares the
candidate with a reference (the champion, or for the first model a naive baseline that predicts
the training fraud rate for everyone) rule by rule, so a person reads exactly which rule held.
"""

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
from dagster import (
    Config,
    MetadataValue,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
)
from pydantic import Field, field_validator
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

from platform_assets.training_set import LABEL

AMOUNT_BANDS = (20.0, 100.0, 500.0)  # EUR; each band includes its lower edge
AMOUNT_BAND_NAMES = ("<20", "20-100", "100-500", ">=500")
CALIBRATION_BINS = 10


Metric = Literal[
    "pr_auc", "roc_auc", "log_loss", "recall_at_precision", "brier", "calibration_error"
]
METRICS: tuple[str, ...] = get_args(Metric)


class MetricRule(Config):
    """One critical metric and how the candidate may move it relative to the reference."""

    metric: Metric = Field(description="Which metric of the suite the rule is about.")
    must: Literal["not_drop", "not_rise"] = Field(
        description="not_drop: higher is better; not_rise: lower is better."
    )
    tolerance: float = Field(default=0.0, ge=0, description="Allowed move the wrong way.")


class GateConfig(Config):
    """What a candidate must show on the holdout to replace the champion."""

    critical: list[MetricRule] = Field(
        # Plain dicts: Dagster's launchpad default must be config, not MetricRule objects.
        default=[
            {"metric": "pr_auc", "must": "not_drop", "tolerance": 0.0},
            {"metric": "roc_auc", "must": "not_drop", "tolerance": 0.0},
            {"metric": "log_loss", "must": "not_rise", "tolerance": 0.0},
            {"metric": "recall_at_precision", "must": "not_drop", "tolerance": 0.0},
        ],
        validate_default=True,
        description="Critical metrics; any rule broken blocks the candidate.",
    )
    primary_metric: Metric = Field(
        default="pr_auc", description="The metric a candidate must improve to be worth a release."
    )
    min_primary_improvement: float = Field(
        default=0.002,
        ge=0,
        description="Least gain on the primary metric; a retrain that changes nothing stays out.",
    )
    slice_tolerance: float = Field(
        default=0.02, ge=0, description="Most any slice's PR-AUC may drop against the reference."
    )
    min_slice_frauds: int = Field(
        default=30,
        ge=1,
        description="Slices with fewer frauds in the holdout are reported, not gated (too noisy).",
    )
    operating_precision: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="Precision the fraud team works at: recall_at_precision is the share of "
        "frauds caught while at least this share of alerts are fraud.",
    )
    floors: dict[str, float] = Field(
        default={"pr_auc": 0.04, "roc_auc": 0.75},
        description="Absolute minimums (higher-is-better metrics) every candidate must reach, "
        "with or without a champion. Defaults fit the simulated payments (fraud rate ~0.9 %).",
    )

    @field_validator("floors")
    @classmethod
    def _floors_name_metrics(cls, floors: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(floors) - set(METRICS))
        if unknown:
            raise ValueError(f"floors: {unknown} are not metrics of the suite {list(METRICS)}")
        return floors


@dataclass(frozen=True)
class Verdict:
    """One row of the gate's table."""

    check: str
    reference: float | None
    candidate: float
    rule: str
    passed: bool


def operating_point(
    labels: np.ndarray, scores: np.ndarray, precision: float
) -> tuple[float, float]:
    """The most frauds caught while precision stays ≥ ``precision``: (recall, threshold).

    (0, 1) when no threshold reaches that precision.
    """
    precisions, recalls, thresholds = precision_recall_curve(labels, scores)
    # The curve's last point (recall 0, precision 1) has no threshold.
    reachable = np.flatnonzero(precisions[:-1] >= precision)
    if not reachable.size:
        return 0.0, 1.0
    best = reachable[np.argmax(recalls[reachable])]
    return float(recalls[best]), float(thresholds[best])


def calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """Expected calibration error over equal-count score bins (|mean score − fraud rate|)."""
    order = np.argsort(scores, kind="stable")
    gaps = [
        abs(scores[part].mean() - labels[part].mean()) * part.size
        for part in np.array_split(order, CALIBRATION_BINS)
        if part.size
    ]
    return float(sum(gaps) / scores.size)


def score_metrics(labels: np.ndarray, scores: np.ndarray, operating_precision: float) -> dict:
    """The suite's whole-holdout metrics for one model's scores."""
    return {
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "log_loss": float(log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "recall_at_precision": operating_point(labels, scores, operating_precision)[0],
        "brier": float(brier_score_loss(labels, scores)),
        "calibration_error": calibration_error(labels, scores),
    }


def slice_masks(rows: pl.DataFrame) -> dict[str, np.ndarray]:
    """Boolean row masks per slice: channel, country, amount band, new vs returning customer."""
    band = pl.col("amount").bin_intervals(list(AMOUNT_BANDS), labels=list(AMOUNT_BAND_NAMES))
    # No payment in the 30 days before this one: the customer is new to the model.
    new = pl.col("txn_count_30d").fill_null(0) == 0
    columns = rows.select(
        channel="channel:" + pl.col("channel"),
        country="country:" + pl.col("country"),
        amount="amount:" + band.cast(pl.String),
        customer="customer:" + pl.when(new).then(pl.lit("new")).otherwise(pl.lit("returning")),
    )
    return {
        name: (columns[column] == name).to_numpy()
        for column in columns.columns
        for name in sorted(columns[column].unique().to_list())
    }


def slice_pr_auc(
    labels: np.ndarray, scores: np.ndarray, masks: dict[str, np.ndarray]
) -> dict[str, float | None]:
    """PR-AUC within each slice; None where the slice holds no fraud."""
    return {
        name: float(average_precision_score(labels[mask], scores[mask]))
        if labels[mask].any()
        else None
        for name, mask in masks.items()
    }


@dataclass(frozen=True)
class ModelEvaluation:
    """One model's results on the holdout."""

    metrics: dict[str, float]
    slices: dict[str, float | None]


def evaluate(
    labels: np.ndarray, scores: np.ndarray, masks: dict[str, np.ndarray], config: GateConfig
) -> ModelEvaluation:
    """Score one model's holdout predictions with the whole suite."""
    return ModelEvaluation(
        metrics=score_metrics(labels, scores, config.operating_precision),
        slices=slice_pr_auc(labels, scores, masks),
    )


def relative_rule(comparison: str, sign: str, margin: float) -> str:
    """A rule against the reference as a person reads it: "≥ reference − 0.02", "≤ reference"."""
    return f"{comparison} reference" + (f" {sign} {margin:g}" if margin else "")


def gate(
    candidate: ModelEvaluation,
    reference: ModelEvaluation,
    slice_frauds: dict[str, int],
    config: GateConfig,
) -> list[Verdict]:
    """Every rule of the gate, held or broken; the candidate passes only if all hold.

    Args:
        candidate: The candidate's results.
        reference: The champion's (or the naive baseline's) results on the same rows.
        slice_frauds: Frauds per slice in the holdout, to skip slices too small to judge.
        config: The rules.
    """
    verdicts = []
    for rule in config.critical:
        new, old = candidate.metrics[rule.metric], reference.metrics[rule.metric]
        if rule.must == "not_drop":
            passed, text = new >= old - rule.tolerance, relative_rule("≥", "−", rule.tolerance)
        else:
            passed, text = new <= old + rule.tolerance, relative_rule("≤", "+", rule.tolerance)
        verdicts.append(Verdict(rule.metric, old, new, text, passed))
    primary = config.primary_metric
    verdicts.append(
        Verdict(
            f"{primary} gain",
            reference.metrics[primary],
            candidate.metrics[primary],
            relative_rule("≥", "+", config.min_primary_improvement),
            candidate.metrics[primary]
            >= reference.metrics[primary] + config.min_primary_improvement,
        )
    )
    for metric, floor in config.floors.items():
        value = candidate.metrics[metric]
        verdicts.append(Verdict(f"{metric} floor", None, value, f"≥ {floor:g}", value >= floor))
    for name, frauds in slice_frauds.items():
        new, old = candidate.slices.get(name), reference.slices.get(name)
        if frauds < config.min_slice_frauds or new is None or old is None:
            continue
        verdicts.append(
            Verdict(
                f"pr_auc [{name}]",
                old,
                new,
                relative_rule("≥", "−", config.slice_tolerance),
                new >= old - config.slice_tolerance,
            )
        )
    return verdicts


def verdict_table(verdicts: list[Verdict], reference_name: str) -> TableMetadataValue:
    """The gate as Dagster table metadata: metric, reference, candidate, rule, verdict."""
    return MetadataValue.table(
        records=[
            TableRecord(
                {
                    "metric": v.check,
                    reference_name: None if v.reference is None else round(v.reference, 4),
                    "candidate": round(v.candidate, 4),
                    "rule": v.rule,
                    "verdict": "pass" if v.passed else "FAIL",
                }
            )
            for v in verdicts
        ],
        schema=TableSchema(
            columns=[
                TableColumn("metric", "string"),
                TableColumn(reference_name, "float", description="The reference's value."),
                TableColumn("candidate", "float"),
                TableColumn("rule", "string", description="What the candidate must reach."),
                TableColumn("verdict", "string"),
            ]
        ),
    )


def as_records(verdicts: list[Verdict]) -> list[dict]:
    """Verdicts as plain dicts (for the stored report)."""
    return [asdict(v) for v in verdicts]


def label_array(frame: pl.DataFrame) -> np.ndarray:
    """The label column as 0/1 integers."""
    return frame[LABEL].cast(pl.Int8).to_numpy()
