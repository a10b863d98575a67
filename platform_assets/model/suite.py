"""The evaluation suite: every model is scored on the same holdout rows by these functions.

Whole-holdout metrics (PR-AUC, ROC-AUC, log loss, recall at the operating precision, Brier
score, calibration error), PR-AUC per slice, and batch scoring time. Free of Dagster, so the
gate, the tests and ``bench/training.py`` score alike. scikit-learn is imported inside the
functions that use it: the code location imports this module, and every run process would pay
for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import polars as pl

from platform_assets.features.labelling import LABEL
from platform_assets.model.recipe import fraud_scores

if TYPE_CHECKING:
    import lightgbm as lgb

AMOUNT_BANDS = (20.0, 100.0, 500.0)  # EUR; each band includes its lower edge
AMOUNT_BAND_NAMES = ("<20", "20-100", "100-500", ">=500")
CALIBRATION_BINS = 10


Metric = Literal[
    "pr_auc", "roc_auc", "log_loss", "recall_at_precision", "brier", "calibration_error"
]
METRICS: tuple[str, ...] = get_args(Metric)


def operating_point(
    labels: np.ndarray, scores: np.ndarray, precision: float
) -> tuple[float, float]:
    """The most frauds caught while precision stays ≥ ``precision``: (recall, threshold).

    (0, 1) when no threshold reaches that precision.
    """
    from sklearn.metrics import precision_recall_curve

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
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    return {
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "log_loss": float(log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "recall_at_precision": operating_point(labels, scores, operating_precision)[0],
        "brier": float(brier_score_loss(labels, scores)),
        "calibration_error": calibration_error(labels, scores),
    }


def slice_masks(rows: pl.DataFrame) -> dict[str, np.ndarray]:
    """Boolean row masks per slice: channel, country, amount band, new vs returning customer.

    No slice by a channel or country the data does not have (all null).
    """
    band = pl.col("amount").bin_intervals(list(AMOUNT_BANDS), labels=list(AMOUNT_BAND_NAMES))
    # No payment in the 30 days before this one: the customer is new to the model.
    new = pl.col("txn_count_30d").fill_null(0) == 0
    roles = [
        (name + ":" + pl.col(name)).alias(name)
        for name in ("channel", "country")
        if name in rows.columns and rows[name].null_count() < rows.height
    ]
    columns = rows.select(
        *roles,
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
    from sklearn.metrics import average_precision_score

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
    labels: np.ndarray,
    scores: np.ndarray,
    masks: dict[str, np.ndarray],
    operating_precision: float,
) -> ModelEvaluation:
    """Score one model's holdout predictions with the whole suite."""
    return ModelEvaluation(
        metrics=score_metrics(labels, scores, operating_precision),
        slices=slice_pr_auc(labels, scores, masks),
    )


def label_array(frame: pl.DataFrame) -> np.ndarray:
    """The label column as 0/1 integers."""
    return frame[LABEL].cast(pl.Int8).to_numpy()


def timed_scores(booster: lgb.Booster, rows: pl.DataFrame) -> tuple[np.ndarray, float]:
    """The booster's scores for ``rows`` and the batch scoring time in ms per 10,000 rows."""
    started = time.perf_counter()
    scores = fraud_scores(booster, rows)
    return scores, (time.perf_counter() - started) * 1000 * 10_000 / rows.height
