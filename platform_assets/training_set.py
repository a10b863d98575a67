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
    AssetKey,
    AssetsDefinition,
    Config,
    MetadataValue,
    asset,
)
from pydantic import Field

from platform_assets.datasets import dataset_output
from platform_assets.feature_store import FEATURE_STORE_REGISTRY
from platform_assets.features import FRAUD_LABELS, VALIDATED_TRANSACTIONS
from resources.clock import Clock
from resources.feature_store import (
    FEATURE_REPO,
    Engine,
    FeatureStoreResource,
    definitions_version,
)
from resources.label_policy import LabelPolicy
from resources.lake import Lake

LABEL = "is_fraud"
# Feature rows stamped at a transaction describe the customer after it; asking just before the
# transaction keeps its own amount out of its features.
JUST_BEFORE = datetime.timedelta(microseconds=1)


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


def matured_days(
    config: TrainingSetConfig, now: datetime.datetime, maturity_days: int
) -> list[datetime.date]:
    """The transaction days to train on; an error for a day whose labels are still arriving."""
    latest = (now - datetime.timedelta(days=maturity_days + 1)).date()
    last = datetime.date.fromisoformat(config.last_day) if config.last_day else latest
    if last > latest:
        raise ValueError(
            f"last_day {last} is too recent: its labels are complete only "
            f"{maturity_days} days after it (label_policy.maturity_days); the latest matured "
            f"day is {latest}"
        )
    return [last - datetime.timedelta(days=back) for back in range(config.days - 1, -1, -1)]


def labelled_transactions(transactions: pl.LazyFrame, chargebacks: pl.LazyFrame) -> pl.DataFrame:
    """Entity rows for Feast: keys, request fields, the as-of instant and the label."""
    charged = chargebacks.select("transaction_id").unique()
    return (
        transactions.join(charged.with_columns(charged=True), on="transaction_id", how="left")
        .select(
            "transaction_id",
            "customer_id",
            "merchant_id",
            "amount",
            "country",
            # Not a model input: evaluation reports the model per channel.
            "channel",
            transaction_epoch_s=pl.col("event_timestamp").dt.epoch("s"),
            event_timestamp=pl.col("event_timestamp") - JUST_BEFORE,
            **{LABEL: pl.col("charged").fill_null(False)},
        )
        .collect()
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
    days = matured_days(config, clock.now(), label_policy.maturity_days)
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
        group_name="features",
        owners=["team:ml-platform"],
        kinds={"feast", "polars", "parquet"},
        tags={"flywheel/stage": "features"},
        code_version=f"1-{definitions_version(repo_path)}",
        deps=[
            FEATURE_STORE_REGISTRY,
            AssetKey("customer_features"),
            AssetKey("merchant_features"),
            VALIDATED_TRANSACTIONS,
            FRAUD_LABELS,
        ],
    )(training_set)
