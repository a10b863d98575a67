"""What MLflow records of a candidate and its evaluation, free of Dagster.

A training run records everything needed to rebuild the model: the hyperparameters, the
training set's data version, the file that holds exactly its rows and their window (first and
last day, row count), the feature service, the asset's code version, the git commit and the lock
file's hash; the model is logged with its signature and registered as a new version.
An evaluation adds its plots and report to the candidate's run and its verdict to the version.
"""

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from platform_assets.features.labelling import LABEL
from platform_assets.model.recipe import (
    Hyperparameters,
    TimeSplit,
    TrainedModel,
    feature_matrix,
    lightgbm_params,
)
from platform_assets.monitoring.reference import REFERENCE_FILE, REFERENCE_SAMPLE_FILE
from resources.environments import PROJECT_ROOT
from resources.feature_store import TIMESTAMP
from resources.model_registry import OPERATING_PRECISION_TAG, THRESHOLD_TAG, ModelRegistry

LOCK_FILE = "uv.lock"
INPUT_EXAMPLE_ROWS = 5


def source_provenance(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The git commit (and whether the tree had changes) and the lock file's SHA-256."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    lock = Path(root, LOCK_FILE)
    return {
        "mlflow.source.git.commit": git("rev-parse", "HEAD") or "unknown",
        "flywheel.git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))),
        "flywheel.lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest()
        if lock.exists()
        else "unknown",
    }


@dataclass(frozen=True)
class TrainingData:
    """Exactly which rows a model is trained on: the kept version of the training set."""

    version: str  # the training set's content hash, its data version
    path: str  # the lake's file of that version, never overwritten
    first_day: str  # the earliest and latest transaction day of its rows
    last_day: str
    rows: int

    @classmethod
    def of(cls, frame: pl.DataFrame, version: str, path: str) -> "TrainingData":
        """The window of ``frame``'s rows (by ``event_timestamp``), stored as ``path``."""
        days = frame[TIMESTAMP].dt.date()
        first, last = days.min(), days.max()
        return cls(version, path, str(first), str(last), frame.height)

    def params(self) -> dict[str, str | int]:
        """MLflow params: what to read to retrain the model from exactly its rows."""
        return {
            "training_set.path": self.path,
            "training_set.first_day": self.first_day,
            "training_set.last_day": self.last_day,
            "training_set.rows": self.rows,
        }


@dataclass(frozen=True)
class TrainingRun:
    """One training, as its MLflow run records it."""

    config: Hyperparameters
    data: TrainingData
    split: TimeSplit
    features: list[str]
    trained: TrainedModel
    training_seconds: float
    tags: dict[str, str]  # provenance, also written onto the registered version
    monitoring_reference: dict[str, Any]  # what monitoring compares new days with
    reference_sample: pl.DataFrame  # training rows for the drift report's plots


def log_candidate(mlflow: Any, registry: ModelRegistry, run: TrainingRun, name: str) -> dict:
    """Log ``run`` to the active MLflow run, register the model, return the version's reference.

    Args:
        mlflow: dagster-mlflow's run resource (the ``mlflow`` module with its run open).
        registry: The registry the model becomes a new version of.
        run: What was trained and how.
        name: The MLflow run's name.
    """
    from mlflow.lightgbm import log_model
    from mlflow.models import infer_signature

    split, trained, features = run.split, run.trained, run.features
    train_fraud_rate = float(split.train[LABEL].mean())  # type: ignore[arg-type]
    mlflow.set_tags({**run.tags, "mlflow.runName": name})
    params = lightgbm_params(run.config, features, trained.positive_weight)
    mlflow.log_params(
        {
            **{f"lgb.{key}": value for key, value in params.items()},
            "config": run.config.model_dump_json(),
            "features": ",".join(features),
            "holdout_start": split.holdout_start,
            **run.data.params(),
        }
    )
    mlflow.log_metrics(
        {
            "validation_log_loss": trained.validation_log_loss,
            "best_iteration": trained.best_iteration,
            "train_rows": split.train.height,
            "validation_rows": split.validation.height,
            # The final boosting's rows: training and validation together after a refit.
            "trained_rows": trained.trained_rows,
            "train_fraud_rate": train_fraud_rate,
            "training_seconds": run.training_seconds,
            "boosting_seconds": trained.boosting_seconds,
        }
    )
    _log_monitoring_reference(mlflow, run)
    example = pl.DataFrame(
        feature_matrix(split.train.head(INPUT_EXAMPLE_ROWS), features), schema=features
    ).to_pandas()
    info = log_model(
        trained.booster,
        name="model",
        signature=infer_signature(example, trained.booster.predict(example.to_numpy())),
        input_example=example,
        # Listed, not inferred: inference costs seconds and these are the scoring imports.
        pip_requirements=_scoring_requirements(),
        registered_model_name=registry.model_name,
    )
    version = str(info.registered_model_version)
    registry.set_version_tags(version, run.tags)
    active = mlflow.active_run().info
    return {
        "model_name": registry.model_name,
        "version": version,
        "run_id": active.run_id,
        "experiment_id": active.experiment_id,
        "features": features,
        "holdout_start": split.holdout_start,
        "train_fraud_rate": train_fraud_rate,
        "training_set_version": run.data.version,
        "training_set_path": run.data.path,
    }


def _log_monitoring_reference(mlflow: Any, run: TrainingRun) -> None:
    """What monitoring compares new days with, as files of the run: stored with the model."""
    mlflow.log_dict(run.monitoring_reference, REFERENCE_FILE)
    with tempfile.TemporaryDirectory() as folder:
        sample = Path(folder, REFERENCE_SAMPLE_FILE)
        run.reference_sample.write_parquet(sample)
        mlflow.log_artifact(str(sample))


def _scoring_requirements() -> list[str]:
    import lightgbm
    import mlflow
    import pandas

    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pandas.__version__}",
    ]


def log_evaluation(
    registry: ModelRegistry,
    candidate: dict[str, Any],
    folder: Path,
    metrics: dict[str, float],
    reference: str,
    failed_rules: list[str],
    holdout_rows: int,
    operating_point: tuple[float, float],
) -> None:
    """Add the evaluation's files and metrics to the candidate's run, its verdict to the version.

    ``operating_point`` is the precision the gate judged at and the candidate's threshold for
    it: the version's decisions use that threshold wherever it scores.
    """
    run_id = candidate["run_id"]
    client = registry.client()
    client.log_artifacts(run_id, str(folder), "evaluation")
    for metric, value in metrics.items():
        client.log_metric(run_id, f"holdout_{metric}", value)
    registry.set_version_tags(
        candidate["version"],
        {
            "eval.verdict": "blocked" if failed_rules else "passed",
            "eval.reference": reference,
            "eval.failed_rules": ", ".join(failed_rules) or "none",
            "eval.holdout_rows": str(holdout_rows),
            OPERATING_PRECISION_TAG: str(operating_point[0]),
            THRESHOLD_TAG: repr(operating_point[1]),
            **{f"eval.{m}": f"{v:.6f}" for m, v in metrics.items()},
        },
    )
