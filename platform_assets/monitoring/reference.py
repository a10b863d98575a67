"""What a model is monitored against, built when it is trained and stored with it, free of Dagster.

Monitoring compares each new day with the model's own past, not with yesterday: the feature
distributions of the rows it trained on, the scores it gave its holdout, and how those scores
map to fraud rates (an isotonic fit on the holdout labels, which the confidence-based estimate
needs). Stored as one JSON file next to the model in MLflow, so any version can be monitored
long after the training set that made it has been rebuilt. scikit-learn is imported where the
reference is built, not by every run process that imports the code location.

The reference is built from a seeded uniform sample of at most ``REFERENCE_ROWS`` training rows
and as many holdout rows (``reference_rows``), so only that sample of the holdout is scored for
it. Its uses need no more: a decile's share from 200,000 rows is within about 0.001 of the
population's, far below what moves a PSI near its warn level (0.1); at the simulator's fraud rate
(about 0.7 %) the holdout sample holds some 1,400 frauds for the isotonic map and the holdout
PR-AUC the realized figure is compared with (warned at a 25 % drop). The sample is plain, not
stratified by label: every consumer reads the figures as unweighted rates.
"""

from typing import Any

import numpy as np
import polars as pl

from platform_assets.ingestion.drift import decile_bins
from platform_assets.monitoring.performance import estimated_pr_auc

REFERENCE_FILE = "monitoring_reference.json"
REFERENCE_SAMPLE_FILE = "monitoring_reference_sample.parquet"
# Training rows kept for Evidently's drift report: enough for its tests, small next to a model.
SAMPLE_ROWS = 5_000
# Rows of the training set and of the holdout the reference is built from (at most).
REFERENCE_ROWS = 200_000


def reference_rows(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    """A uniform sample of ``rows`` of ``frame``'s rows, the same for the same seed; all if fewer.

    What the monitoring reference is built from: its feature deciles on sampled training rows,
    its score deciles and calibration on sampled holdout rows, which alone are scored for it.
    """
    if rows < 1:
        raise ValueError(f"a monitoring reference needs at least one row, not {rows}")
    if frame.height <= rows:
        return frame
    return frame.sample(rows, seed=seed)


def training_reference(
    train: pl.DataFrame, features: list[str], labels: np.ndarray, scores: np.ndarray
) -> dict[str, Any]:
    """The reference of a model trained on ``train`` and scored on its holdout.

    Args:
        train: The rows the model was trained on (or a ``reference_rows`` sample of them), with
            its features.
        features: The model's inputs.
        labels: The holdout's labels (0/1), or those of a ``reference_rows`` sample of it.
        scores: The model's scores of the same holdout rows.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import average_precision_score

    calibrator = IsotonicRegression(y_min=1e-6, y_max=1 - 1e-6, out_of_bounds="clip")
    calibrator.fit(scores, labels)
    calibration = {
        "x": calibrator.X_thresholds_.tolist(),  # type: ignore[attr-defined]
        "y": calibrator.y_thresholds_.tolist(),  # type: ignore[attr-defined]
    }
    return {
        "features": {name: decile_bins(train[name]) for name in features},
        "scores": decile_bins(pl.Series(scores)),
        "calibration": calibration,
        "train_rows": train.height,
        "holdout": {
            "rows": int(labels.size),
            "frauds": int(labels.sum()),
            "pr_auc": float(average_precision_score(labels, scores)),
            "estimated_pr_auc": estimated_pr_auc(scores, calibrate(scores, calibration)),
        },
    }


def calibrate(scores: np.ndarray, calibration: dict[str, list[float]]) -> np.ndarray:
    """Fraud probabilities for ``scores`` from the reference's isotonic map."""
    return np.interp(scores, calibration["x"], calibration["y"])


def reference_sample(train: pl.DataFrame, features: list[str], seed: int) -> pl.DataFrame:
    """Training rows kept for the drift report's plots."""
    return train.select(features).sample(min(SAMPLE_ROWS, train.height), seed=seed)
