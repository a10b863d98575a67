"""Monitoring stage: every new day scored by the model that was the champion that day.

The scores go to the prediction log, where the online service's predictions will sit next to
them, so monitoring and the canary analysis read one table. A day is scored with the features
the feature store knew at each payment (the training set's point-in-time join) and with the
threshold the champion's gate set.
"""

import datetime
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from platform_assets.common.catalog import MONITORING, catalog
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    FEATURE_STORE_REGISTRY,
    MERCHANT_FEATURES,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.partitions import daily_partitions, partition_day
from platform_assets.features.labelling import JUST_BEFORE, LABEL, labelled_transactions
from platform_assets.model.recipe import fraud_scores
from resources.clock import Clock
from resources.feature_store import FeatureStoreResource
from resources.lake import Lake
from resources.model_registry import CHAMPION, THRESHOLD_TAG, ModelRegistry
from resources.prediction_log import BATCH, LOG_COLUMNS, PredictionLog


@asset(
    partitions_def=daily_partitions,
    kinds={"lightgbm", "sqlite"},
    code_version="1",
    io_manager_key="record_io_manager",
    deps=[VALIDATED_TRANSACTIONS, CUSTOMER_FEATURES, MERCHANT_FEATURES, FEATURE_STORE_REGISTRY],
    # ingestion_job scores each new day once its features are in; a day before the first
    # champion is skipped.
    output_required=False,
    **catalog(MONITORING),
)
def champion_scores(
    context: AssetExecutionContext,
    feature_store: FeatureStoreResource,
    model_registry: ModelRegistry,
    prediction_log: PredictionLog,
    lake: Lake,
    clock: Clock,
) -> Iterator[Output[dict[str, Any]]]:
    """The day's payments scored by that day's champion, written to the prediction log.

    Re-running a day replaces its batch rows in the log and nothing else. A day that ended
    before any model was promoted has no champion: nothing is scored or materialized.
    """
    day = context.partition_key
    day_end = datetime.datetime.combine(
        partition_day(day) + datetime.timedelta(days=1), datetime.time(), tzinfo=datetime.UTC
    )
    champion = model_registry.champion_at(day_end)
    if champion is None:
        context.log.info(f"no version was the {CHAMPION} when {day} ended: nothing to score")
        return
    version = str(champion.version)
    if THRESHOLD_TAG not in champion.tags:
        raise ValueError(
            f"{model_registry.model_name} v{version} has no {THRESHOLD_TAG} tag: it was not "
            "evaluated by evaluation_report, so it has no operating threshold to decide at"
        )
    threshold = float(champion.tags[THRESHOLD_TAG])
    booster = model_registry.load_booster(version)
    rows = _scored_rows(day, lake, feature_store, booster)
    log_rows = _log_rows(rows, day, model_registry.model_name, version, threshold, booster, clock)
    written = prediction_log.replace(day, BATCH, log_rows)
    declined = float(log_rows["decision"].mean())  # type: ignore[arg-type]
    context.log.info(f"{written} payments of {day} scored by v{version}; {declined:.2%} declined")
    record = {"day": day, "model_version": version, "threshold": threshold, "rows": written}
    yield Output(
        record,
        metadata={
            "dagster/row_count": MetadataValue.int(written),
            "model_version": MetadataValue.url(model_registry.version_url(version)),
            "champion_version": MetadataValue.text(version),
            "threshold": MetadataValue.float(threshold),
            "declined_share": MetadataValue.float(round(declined, 6)),
            "mean_score": MetadataValue.float(round(float(log_rows["score"].mean()), 6)),  # type: ignore[arg-type]
            "prediction_log": MetadataValue.text(f"{prediction_log.table} (source {BATCH})"),
        },
    )


def _scored_rows(
    day: str, lake: Lake, feature_store: FeatureStoreResource, booster: Any
) -> pl.DataFrame:
    """The day's payments with their point-in-time features and the booster's score."""
    transactions = lake.scan_partitions(VALIDATED_TRANSACTIONS, [day])
    no_labels = pl.LazyFrame(schema={"transaction_id": pl.Int64})
    entities = labelled_transactions(transactions, no_labels).drop(LABEL)
    rows = feature_store.historical_features(entities, "polars")
    return rows.with_columns(score=pl.Series(fraud_scores(booster, rows)))


def _log_rows(
    rows: pl.DataFrame,
    day: str,
    model_name: str,
    version: str,
    threshold: float,
    booster: Any,
    clock: Clock,
) -> pl.DataFrame:
    """The scored payments as prediction log rows: who, when, which model, inputs, decision."""
    # A model input the log keeps anyway (the amount) is its own column, logged once.
    features = [
        pl.col(name).cast(pl.Float64) for name in booster.feature_name() if name not in LOG_COLUMNS
    ]
    return rows.select(
        *features,
        request_id=pl.col("transaction_id").cast(pl.String),
        transaction_id=pl.col("transaction_id").cast(pl.String),
        customer_id="customer_id",
        amount="amount",
        event_time=pl.col("event_timestamp") + JUST_BEFORE,
        day=pl.lit(day),
        model_name=pl.lit(model_name),
        model_version=pl.lit(version),
        variant=pl.lit(CHAMPION),
        source=pl.lit(BATCH),
        score="score",
        threshold=pl.lit(threshold),
        decision=pl.col("score") >= threshold,
        logged_at=pl.lit(clock.now()).dt.cast_time_unit("us"),
    )
