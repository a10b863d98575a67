"""The training set: labelled transactions with their features as they were known at the time.

Features come from a point-in-time join of the Feast feature service, so a transaction is
paired with the state after its customer's previous payment and with the merchant's previous
end-of-day row, never with anything written later. Labels respect their delay: only
transactions whose label window has closed are used, so a recent transaction is never called
legitimate just because its chargeback has not arrived yet.

A window with holes is refused, naming them: a day of transactions not stored (a training set
without it would say nothing of it), or a day whose transactions are stored but whose feature
rows are not, from the longest view TTL before the window on (its transactions, and those of
the days after that the point-in-time join pairs with its rows, would get older features).

Every distinct training set is kept, named by its content hash (its data version):
``training_set/versions/<hash>.parquet``, with ``training_set.parquet`` the latest build. A
rebuild on another window never overwrites the rows an earlier model was trained on, and each
model's MLflow run names its file (``training_set.path``).
"""

import datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
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
from platform_assets.common.partitions import FIRST_BUSINESS_DAY, label_report_days
from platform_assets.features.engineering import customer_history_days
from platform_assets.features.feature_tables import missing_days
from platform_assets.features.labelling import LABEL, labelled_transactions, matured_days
from resources.clock import Clock
from resources.feature_store import (
    FEATURE_REPO,
    Engine,
    FeatureStoreResource,
    definitions_version,
)
from resources.label_policy import LabelPolicy
from resources.lake import BY_CONTENT, KEEP_VERSIONS, Lake


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
    hash of the content, so an identical rebuild keeps it. Each version is kept under that hash
    (metadata ``version_path``), so a model can be retrained from exactly its rows.
    """
    days = matured_days(config.last_day, config.days, clock.now(), label_policy.maturity_days)
    keys = [day.isoformat() for day in days]
    if holes := window_holes(lake, days):
        listed = "; ".join(f"{key.to_user_string()}: {', '.join(found)}" for key, found in holes)
        raise missing_days(
            f"training_set {keys[0]}..{keys[-1]} has holes ({listed}): its rows would be "
            "missing days or joined with older features. Ingest (or replay) those days and "
            "compute their feature rows, or choose another window (last_day, days).",
            {f"{key.path[-1]}_missing": found for key, found in holes},
        )
    report_days = label_report_days(days[0], days[-1], label_policy.maturity_days)
    entities = labelled_transactions(
        lake.scan_partitions(VALIDATED_TRANSACTIONS, keys),
        lake.scan_partitions(FRAUD_LABELS, report_days),
    )
    context.log.info(f"point-in-time join of {entities.height} transactions over {len(keys)} days")
    rows = feature_store.historical_features(entities, config.engine).sort(
        "event_timestamp", "transaction_id"
    )
    frauds = rows.select(pl.col(LABEL).sum()).item()
    return dataset_output(
        rows,
        first_day=MetadataValue.text(keys[0]),
        last_day=MetadataValue.text(keys[-1]),
        fraud_rate=MetadataValue.float(round(frauds / rows.height, 6)),
        frauds=MetadataValue.int(frauds),
        label_maturity_days=MetadataValue.int(label_policy.maturity_days),
        feature_service=MetadataValue.text(feature_store.feature_service),
        retrieval_engine=MetadataValue.text(config.engine),
        feature_definitions_version=MetadataValue.text(
            definitions_version(feature_store.repo_path)
        ),
    )


def window_holes(lake: Lake, days: list[datetime.date]) -> list[tuple[AssetKey, list[str]]]:
    """What the point-in-time join of ``days`` needs and the lake lacks, per asset.

    Every day's transactions; and the customer and merchant rows of every day with stored
    transactions from the customer windows' 30 days (the customer view's TTL, the longest)
    before the first day on, since the join pairs a transaction with rows up to that old. A day
    before the first business day, or without transactions (halted), has no rows to miss.
    """
    keys = [day.isoformat() for day in days]
    stored = lake.stored_partitions(VALIDATED_TRANSACTIONS, keys)
    holes = [(VALIDATED_TRANSACTIONS, sorted(set(keys) - set(stored)))]
    joined = [day.isoformat() for day in customer_history_days(days)]
    with_rows = lake.stored_partitions(
        VALIDATED_TRANSACTIONS, [day for day in joined if day >= FIRST_BUSINESS_DAY]
    )
    for key in (CUSTOMER_FEATURES, MERCHANT_FEATURES):
        holes.append((key, sorted(set(with_rows) - set(lake.stored_partitions(key, with_rows)))))
    return [(key, found) for key, found in holes if found]


def build_training_set(repo_path: Path = FEATURE_REPO) -> AssetsDefinition:
    """The training set asset for a Feast repository.

    Its code version carries the hash of the feature definitions, since the point-in-time join
    runs them: a changed view marks the training set (and every model on it) stale.
    """
    return asset(
        kinds={"feast", "polars", "parquet"},
        code_version=f"1-{definitions_version(repo_path)}",
        # The lake keeps every distinct training set under its content hash.
        metadata={KEEP_VERSIONS: BY_CONTENT},
        deps=[
            FEATURE_STORE_REGISTRY,
            CUSTOMER_FEATURES,
            MERCHANT_FEATURES,
            VALIDATED_TRANSACTIONS,
            FRAUD_LABELS,
        ],
        **catalog(FEATURES),
    )(training_set)
