"""Training stage: a LightGBM candidate from the training set, tracked and registered in MLflow.

The recipe (``recipe.py``) trains; the MLflow run (through dagster-mlflow, ``tracking.py``)
records everything needed to rebuild the model, down to the lake's file of exactly the rows it
was trained on and their window, and the model is registered as a new version of the registered
model. The asset's value is a reference to that version, which evaluation and
deployment receive as their input.
"""

import hashlib
import time
from typing import Any

import polars as pl
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)
from pydantic import Field

from platform_assets.common.catalog import TRAINING, catalog
from platform_assets.common.keys import TRAINING_SET
from platform_assets.model.recipe import (
    Hyperparameters,
    fraud_scores,
    holdout,
    model_features,
    time_split,
    train,
)
from platform_assets.model.suite import label_array
from platform_assets.model.tracking import (
    TrainingData,
    TrainingRun,
    log_candidate,
    source_provenance,
)
from platform_assets.monitoring.reference import (
    REFERENCE_ROWS,
    reference_rows,
    reference_sample,
    training_reference,
)
from resources.dask_cluster import DaskCluster
from resources.feature_store import FeatureStoreResource
from resources.lake import Lake
from resources.model_registry import ModelRegistry


class TrainingConfig(Config, Hyperparameters):
    """LightGBM hyperparameters and the time split, editable in the launchpad."""

    monitoring_reference_rows: int = Field(
        default=REFERENCE_ROWS,
        ge=10_000,
        description="Most training rows and holdout rows the monitoring reference is built from "
        "(a seeded uniform sample; only the sampled holdout rows are scored for it). Deciles and "
        "the calibration map need no more; the model is trained on every row either way.",
    )


@asset(
    kinds={"lightgbm", "mlflow"},
    # 2: the raw amount as an input, and the refit after early stopping.
    code_version="2",
    io_manager_key="record_io_manager",
    # A new training set (a retraining request rebuilds it) trains a new candidate.
    automation_condition=AutomationCondition.eager(),
    **catalog(TRAINING),
)
def candidate_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    training_set: pl.DataFrame,
    feature_store: FeatureStoreResource,
    model_registry: ModelRegistry,
    lake: Lake,
    dask_cluster: DaskCluster,
    mlflow: ResourceParam[Any],
) -> Output[dict[str, Any]]:
    """A LightGBM fraud model trained on the training set, registered as a new MLflow version.

    Trained in the run's process, deterministic (the same training set and config give a
    byte-identical model), or on the Dask cluster of ``dask_cluster``. Its latest
    rows are held out for ``evaluation_report``; the value is a reference to the version. The
    run logs the lake's file of exactly these rows (``training_set.path``) and their window.
    """
    # dagster-mlflow opened the MLflow run with the Dagster run; it must not stay RUNNING.
    try:
        # The training set's kept version under its content hash: stored by training_set
        # already, and here if it was built before training sets were kept.
        version = lake.keep_by_content(training_set, TRAINING_SET)
        path = lake.version_path(TRAINING_SET, None, version)
        data = TrainingData.of(training_set, version, str(path))
        output = _train_and_register(
            context,
            config,
            training_set,
            data,
            feature_store,
            model_registry,
            dask_cluster,
            mlflow,
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
    data: TrainingData,
    feature_store: FeatureStoreResource,
    model_registry: ModelRegistry,
    dask_cluster: DaskCluster,
    mlflow: Any,
) -> Output[dict[str, Any]]:
    features = model_features(config, feature_store.feature_names())
    split = time_split(training_set, config.validation_fraction, config.holdout_fraction)
    context.log.info(
        f"training on {split.train.height} rows, early stopping on {split.validation.height}"
        f"{' then refitting on both' if config.refit else ''}, holding out from "
        f"{split.holdout_start} ({dask_cluster.engine})"
    )
    started = time.perf_counter()
    with dask_cluster.client() as cluster:
        trained = train(config, split, features, cluster)
    # The monitoring reference is built from (and scores) a seeded sample, not every row.
    rows, seed = config.monitoring_reference_rows, config.seed
    unseen = reference_rows(holdout(training_set, split.holdout_start), rows, seed)
    sampled_train = reference_rows(split.train.select(features), rows, seed)
    run = TrainingRun(
        config=config,
        data=data,
        split=split,
        features=features,
        trained=trained,
        training_seconds=time.perf_counter() - started,
        tags={
            "flywheel.training_set_version": data.version,
            "flywheel.training_set_path": data.path,
            "flywheel.feature_service": feature_store.feature_service,
            "flywheel.training_engine": dask_cluster.engine,
            "flywheel.code_version": context.assets_def.code_versions_by_key[context.asset_key]
            or "",
            "flywheel.dagster_run_id": context.run.run_id,
            "flywheel.dagster_run_url": model_registry.dagster_run_url(context.run.run_id),
            **source_provenance(),
        },
        monitoring_reference=training_reference(
            sampled_train, features, label_array(unseen), fraud_scores(trained.booster, unseen)
        ),
        reference_sample=reference_sample(split.train, features, config.seed),
    )
    # dagster-mlflow names the run after the job; the asset and the Dagster run say more.
    reference = log_candidate(
        mlflow, model_registry, run, name=f"candidate_model {context.run.run_id[:8]}"
    )
    metadata = _catalog_entry(reference, run, model_registry)
    metadata["training_engine"] = MetadataValue.text(dask_cluster.engine)
    return Output(reference, metadata=metadata)


def _catalog_entry(
    reference: dict[str, Any], run: TrainingRun, model_registry: ModelRegistry
) -> dict[str, Any]:
    """The candidate's metadata in the UI: MLflow links, the training set and the boosting."""
    version, trained = reference["version"], run.trained
    return {
        "mlflow_run": MetadataValue.url(
            model_registry.run_url(reference["experiment_id"], reference["run_id"])
        ),
        "model_version": MetadataValue.url(model_registry.version_url(version)),
        "registered_model": MetadataValue.text(f"{model_registry.model_name} v{version}"),
        "training_set_version": MetadataValue.text(reference["training_set_version"]),
        "training_set_path": MetadataValue.path(run.data.path),
        "training_window": MetadataValue.text(
            f"{run.data.first_day} .. {run.data.last_day} ({run.data.rows:,} rows)"
        ),
        "best_iteration": MetadataValue.int(trained.best_iteration),
        "validation_log_loss": MetadataValue.float(round(trained.validation_log_loss, 6)),
        "positive_weight": MetadataValue.float(round(trained.positive_weight, 4)),
        "features": MetadataValue.int(len(run.features)),
        "train_rows": MetadataValue.int(trained.trained_rows),
        "holdout_start": MetadataValue.text(run.split.holdout_start),
        # The rows the monitoring reference was built from: a sample of at most the config's cap.
        "monitoring_reference_train_rows": MetadataValue.int(
            run.monitoring_reference["train_rows"]
        ),
        "monitoring_reference_holdout_rows": MetadataValue.int(
            run.monitoring_reference["holdout"]["rows"]
        ),
        "training_seconds": MetadataValue.float(round(run.training_seconds, 3)),
        "boosting_seconds": MetadataValue.float(round(trained.boosting_seconds, 3)),
        "model_sha256": MetadataValue.text(
            hashlib.sha256(trained.booster.model_to_string().encode()).hexdigest()
        ),
    }
