"""The training set: labelled transactions with their features as they were known at the time.

Features come from a point-in-time join of the Feast feature service, so a transaction is
paired with the state after its customer's previous payment and with the merchant's previous
end-of-day row, never with anything written later. Labels respect their delay: only
transactions whose label window has closed are used, so a recent transaction is never called
legitimate just because its chargeback has not arrived yet.
"""

import datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MetadataValue,
    asset,
)
from pydantic import Field

from platform_assets.common.catalog import FEATURES, catalog
from platform_assets.common.datasets import dataset_output
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    FEATURE_STORE_REGISTRY,
    FRAUD_LABELS,
    MERCHANT_FEATURES,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.features.labelling import LABEL, labelled_transactions, matured_days
from resources.clock import Clock
from resources.feature_store import (
    FEATURE_REPO,
    Engine,
    FeatureStoreResource,
    definitions_version,
)
from resources.label_policy import LabelPolicy
from resources.lake import Lake


class TrainingSetConfig(Config):
    """Which transactions to train on."""

    last_day: str = Field(
        default="",
        description="Last transaction day (YYYY-MM-DD). Empty: the latest day whose labels have "
        "all arrived (label_policy.maturity_days before today).",
    )
    days: int = Field(default=28, ge=1, description="How many days up to last_day to include.")
    engine: Engine = Field(
        default="polars",
        description="Point-in-time join: 'polars' (our as-of join over the views' parquet, "
        "seconds for a million rows) or 'feast' (Feast's get_historical_features on DuckDB, "
        "tens of GB at that size). Both give the same rows; bench/features.py compares them.",
    )


def training_set(
    context: AssetExecutionContext,
    config: TrainingSetConfig,
    feature_store: FeatureStoreResource,
    lake: Lake,
    clock: Clock,
    label_policy: LabelPolicy,
):
    """Labelled transactions of a window of matured days, with the model's features as of each.

    Built by the point-in-time join of the ``fraud_model_v1`` service (our as-of join by
    default, or Feast's historical retrieval; the same rows either way); its data version is a
    hash of the content, so an identical rebuild keeps it.
    """
    days = matured_days(config.last_day, config.days, clock.now(), label_policy.maturity_days)
    keys = [day.isoformat() for day in days]
    stored = lake.stored_partitions(VALIDATED_TRANSACTIONS, keys)
    if not stored:
        raise FileNotFoundError(f"no validated_transactions stored for {keys[0]}..{keys[-1]}")
    # Labels of day D's transactions are reported on days D .. D+maturity_days.
    report_days = [
        (days[0] + datetime.timedelta(days=n)).isoformat()
        for n in range((days[-1] - days[0]).days + label_policy.maturity_days + 1)
    ]
    entities = labelled_transactions(
        lake.scan_partitions(VALIDATED_TRANSACTIONS, stored),
        lake.scan_partitions(FRAUD_LABELS, report_days),
    )
    context.log.info(
        f"point-in-time join of {entities.height} transactions over {len(stored)} days"
    )
    rows = feature_store.historical_features(entities, config.engine).sort(
        "event_timestamp", "transaction_id"
    )
    skipped = sorted(set(keys) - set(stored))
    frauds = rows.select(pl.col(LABEL).sum()).item()
    return dataset_output(
        rows,
        first_day=MetadataValue.text(keys[0]),
        last_day=MetadataValue.text(keys[-1]),
        days_missing=MetadataValue.text(", ".join(skipped) or "none"),
        fraud_rate=MetadataValue.float(round(frauds / rows.height, 6)),
        frauds=MetadataValue.int(frauds),
        label_maturity_days=MetadataValue.int(label_policy.maturity_days),
        feature_service=MetadataValue.text(feature_store.feature_service),
        retrieval_engine=MetadataValue.text(config.engine),
        feature_definitions_version=MetadataValue.text(
            definitions_version(feature_store.repo_path)
        ),
    )


def build_training_set(repo_path: Path = FEATURE_REPO) -> AssetsDefinition:
    """The training set asset for a Feast repository.

    Its code version carries the hash of the feature definitions, since the point-in-time join
    runs them: a changed view marks the training set (and every model on it) stale.
    """
    return asset(
        kinds={"feast", "polars", "parquet"},
        code_version=f"1-{definitions_version(repo_path)}",
        deps=[
            FEATURE_STORE_REGISTRY,
            CUSTOMER_FEATURES,
            MERCHANT_FEATURES,
            VALIDATED_TRANSACTIONS,
            FRAUD_LABELS,
        ],
        **catalog(FEATURES),
    )(training_set)
