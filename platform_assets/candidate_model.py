"""Training stage: a LightGBM candidate from the training set, tracked and registered in MLflow.

The MLflow run (through dagster-mlflow) records everything needed to rebuild the model: the
hyperparameters, the training set's data version, the feature service, the asset's code
version, the git commit and the lock file's hash. The model is registered as a new version of
the registered model; the asset's value is a reference to that version, which evaluation and
deployment receive as their input.
"""

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)

from platform_assets.datasets import content_hash
from platform_assets.model_training import (
    TrainingConfig,
    feature_matrix,
    lightgbm_params,
    model_features,
    time_split,
    train,
)
from platform_assets.training_set import LABEL
from resources.environments import PROJECT_ROOT
from resources.feature_store import FeatureStoreResource
from resources.model_registry import ModelRegistry

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


@asset(
    group_name="training",
    owners=["team:ml-platform"],
    kinds={"lightgbm", "mlflow"},
    tags={"flywheel/stage": "training"},
    code_version="1",
    io_manager_key="record_io_manager",
    # A new training set (a retraining request rebuilds it) trains a new candidate.
    automation_condition=AutomationCondition.eager(),
)
def candidate_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    training_set: pl.DataFrame,
    feature_store: FeatureStoreResource,
    model_registry: ModelRegistry,
    mlflow: ResourceParam[Any],
) -> Output[dict[str, Any]]:
    """A LightGBM fraud model trained on the training set, registered as a new MLflow version.

    Deterministic: the same training set and config give a byte-identical model. Its latest
    rows are held out for ``evaluation_report``; the value is a reference to the version.
    """
    # dagster-mlflow opened the MLflow run with the Dagster run; it must not stay RUNNING.
    try:
        output = _train_and_register(
            context, config, training_set, feature_store, model_registry, mlflow
        )
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run()
    return output


def _train_and_register(
    context: AssetExecutionContext,
    config: TrainingConfig,
    training_set: pl.DataFrame,
    feature_store: FeatureStoreResource,
    model_registry: ModelRegistry,
    mlflow: Any,
) -> Output[dict[str, Any]]:
    from mlflow.lightgbm import log_model
    from mlflow.models import infer_signature

    service = feature_store.feature_service
    features = model_features(config, feature_store.feature_names())
    split = time_split(training_set, config.validation_fraction, config.holdout_fraction)
    context.log.info(
        f"training on {split.train.height} rows, early stopping on {split.validation.height}, "
        f"holding out from {split.holdout_start}"
    )
    started = time.perf_counter()
    trained = train(config, split, features)
    training_seconds = time.perf_counter() - started

    data_version = content_hash(training_set)
    code_version = context.assets_def.code_versions_by_key[context.asset_key] or ""
    tags = {
        "flywheel.training_set_version": data_version,
        "flywheel.feature_service": service,
        "flywheel.code_version": code_version,
        "flywheel.dagster_run_id": context.run.run_id,
        "flywheel.dagster_run_url": model_registry.dagster_run_url(context.run.run_id),
        **source_provenance(),
    }
    params = lightgbm_params(config, features, trained.positive_weight)
    train_fraud_rate = float(split.train[LABEL].mean())  # type: ignore[arg-type]
    # dagster-mlflow names the run after the job; the asset and the Dagster run say more.
    mlflow.set_tags({**tags, "mlflow.runName": f"candidate_model {context.run.run_id[:8]}"})
    mlflow.log_params(
        {
            **{f"lgb.{key}": value for key, value in params.items()},
            "config": config.model_dump_json(),
            "features": ",".join(features),
            "holdout_start": split.holdout_start,
        }
    )
    mlflow.log_metrics(
        {
            "validation_log_loss": trained.validation_log_loss,
            "best_iteration": trained.best_iteration,
            "train_rows": split.train.height,
            "validation_rows": split.validation.height,
            "train_fraud_rate": train_fraud_rate,
            "training_seconds": training_seconds,
            "boosting_seconds": trained.boosting_seconds,
        }
    )
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
        registered_model_name=model_registry.model_name,
    )
    version = str(info.registered_model_version)
    model_registry.set_version_tags(version, tags)
    run = mlflow.active_run().info

    reference = {
        "model_name": model_registry.model_name,
        "version": version,
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "features": features,
        "holdout_start": split.holdout_start,
        "train_fraud_rate": train_fraud_rate,
        "training_set_version": data_version,
    }
    return Output(
        reference,
        metadata={
            "mlflow_run": MetadataValue.url(model_registry.run_url(run.experiment_id, run.run_id)),
            "model_version": MetadataValue.url(model_registry.version_url(version)),
            "registered_model": MetadataValue.text(f"{model_registry.model_name} v{version}"),
            "training_set_version": MetadataValue.text(data_version),
            "best_iteration": MetadataValue.int(trained.best_iteration),
            "validation_log_loss": MetadataValue.float(round(trained.validation_log_loss, 6)),
            "positive_weight": MetadataValue.float(round(trained.positive_weight, 4)),
            "features": MetadataValue.int(len(features)),
            "train_rows": MetadataValue.int(split.train.height),
            "holdout_start": MetadataValue.text(split.holdout_start),
            "training_seconds": MetadataValue.float(round(training_seconds, 3)),
            "boosting_seconds": MetadataValue.float(round(trained.boosting_seconds, 3)),
            "model_sha256": MetadataValue.text(
                hashlib.sha256(trained.booster.model_to_string().encode()).hexdigest()
            ),
        },
    )


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
