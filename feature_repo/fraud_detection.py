"""The fraud model's features, in dependency order: entities, sources, views, services.

Training and serving read these same definitions: the offline store joins them point in time for
training sets, the online store serves their latest values, and the on-demand view below runs
the same Python for both. Changing anything here changes the code version of Dagster's
``feature_store_registry``, ``online_features`` and ``training_set`` assets, so they show as
stale until rebuilt.

The sources are the parquet files that Flywheel's ``customer_features`` and
``merchant_features`` assets write into the lake. The lake is ``$FLYWHEEL_LAKE_ROOT``, by
default the project's ``.flywheel/data/lake`` (where ``make dev`` keeps it); without the variable
(the Feast CLI) the data folder is created, so ``feast -c feature_repo plan`` works on a fresh
clone.
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

# The project's data folder, where `make dev` keeps its lake and feature_store.yaml its store.
PROJECT_DATA = Path(__file__).resolve().parents[1] / ".flywheel" / "data"
LAKE = Path(os.environ.get("FLYWHEEL_LAKE_ROOT") or PROJECT_DATA / "lake")
if "FLYWHEEL_LAKE_ROOT" not in os.environ:
    # The Feast CLI on a checkout (Dagster always passes its lake and its own store folder):
    # feature_store.yaml keeps the registry in .flywheel/data/feast and Feast creates only the
    # last folder of that path, so on a fresh clone `feast plan` needs the data folder made.
    PROJECT_DATA.mkdir(parents=True, exist_ok=True)

# --- Entities ---------------------------------------------------------------------------------

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A cardholder; the issuer's customer id.",
)

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="A merchant that accepts the card; the acquirer's merchant id.",
)

# --- Sources ----------------------------------------------------------------------------------

customer_features_source = FileSource(
    name="customer_features_source",
    path=str(LAKE / "customer_features" / "*.parquet"),
    timestamp_field="event_timestamp",
    description="One row per transaction: the customer's behaviour right after it.",
)

merchant_features_source = FileSource(
    name="merchant_features_source",
    path=str(LAKE / "merchant_features" / "*.parquet"),
    timestamp_field="event_timestamp",
    description="One row per merchant and day, stamped at the end of the day.",
)

# What the caller knows about the transaction being scored, before any feature is looked up.
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name="amount", dtype=Float64, description="Amount of the transaction (EUR)."),
        Field(name="country", dtype=String, description="Country of the merchant (ISO)."),
        Field(
            name="transaction_epoch_s",
            dtype=Int64,
            description="When the transaction happens, seconds since the Unix epoch (UTC).",
        ),
    ],
)

# --- Feature views ----------------------------------------------------------------------------

customer_behaviour = FeatureView(
    name="customer_behaviour",
    entities=[customer],
    # A customer silent for longer than the widest window has no meaningful behaviour left.
    ttl=timedelta(days=30),
    schema=[
        Field(name="txn_count_1h", dtype=Int64, description="Transactions in the last hour."),
        Field(name="txn_count_24h", dtype=Int64, description="Transactions in the last 24 h."),
        Field(name="txn_count_7d", dtype=Int64, description="Transactions in the last 7 days."),
        Field(name="txn_count_30d", dtype=Int64, description="Transactions in the last 30 days."),
        Field(name="amount_sum_1h", dtype=Float64, description="Amount spent in the last hour."),
        Field(name="amount_sum_24h", dtype=Float64, description="Amount spent in the last 24 h."),
        Field(name="amount_mean_24h", dtype=Float64, description="Mean amount, last 24 h."),
        Field(name="amount_mean_7d", dtype=Float64, description="Mean amount, last 7 days."),
        Field(name="amount_mean_30d", dtype=Float64, description="Mean amount, last 30 days."),
        Field(name="amount_std_30d", dtype=Float64, description="Amount std dev, last 30 days."),
        Field(name="amount_max_30d", dtype=Float64, description="Largest amount, last 30 days."),
        Field(
            name="distinct_merchants_24h",
            dtype=Int64,
            description="Different merchants paid in the last 24 h.",
        ),
        Field(
            name="home_country",
            dtype=String,
            description="Country of most of the customer's transactions in the 30 days before "
            "the day began.",
        ),
        Field(
            name="last_transaction_epoch_s",
            dtype=Int64,
            description="When the customer last transacted (seconds since the Unix epoch).",
        ),
    ],
    source=customer_features_source,
    online=True,
    description="How the customer has been paying, as of their latest transaction.",
    tags={"owner": "team:ml-platform", "asset": "customer_features"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    # Rows are daily; a merchant with no row for a week is no longer known.
    ttl=timedelta(days=7),
    schema=[
        Field(name="merchant_txn_count_24h", dtype=Int64, description="Transactions, last day."),
        Field(name="merchant_txn_count_7d", dtype=Int64, description="Transactions, last 7 days."),
        Field(
            name="merchant_amount_mean_7d", dtype=Float64, description="Mean amount, last 7 days."
        ),
        Field(
            name="merchant_matured_txn_count",
            dtype=Int64,
            description="Transactions old enough that their chargebacks have all arrived.",
        ),
        Field(
            name="merchant_chargeback_rate",
            dtype=Float64,
            description="Share of the matured transactions that were charged back.",
        ),
        *(
            field
            for window in (1, 7, 30)
            for field in (
                Field(
                    name=f"merchant_delayed_txn_count_{window}d",
                    dtype=Int64,
                    description=f"Transactions in the {window} day(s) ending one label delay ago.",
                ),
                Field(
                    name=f"merchant_fraud_rate_{window}d",
                    dtype=Float64,
                    description=f"Share of them with a fraud label known by now ({window} d).",
                ),
            )
        ),
    ],
    source=merchant_features_source,
    online=True,
    description="The merchant's volume, its chargeback rate over matured labels, and its fraud "
    "rates over the 1, 7 and 30 days ending one label delay ago (a terminal compromised for "
    "weeks shows within a week).",
    tags={"owner": "team:ml-platform", "asset": "merchant_features"},
)

# --- On-demand features -----------------------------------------------------------------------


@on_demand_feature_view(
    sources=[customer_behaviour, transaction_request],
    # Named explicitly: without entities Feast files the view under a placeholder entity that
    # its plan-based apply never registers, and online reads then fail.
    entities=[customer],
    schema=[
        Field(name="amount_to_customer_mean", dtype=Float64),
        Field(name="hour_of_day", dtype=Int64),
        Field(name="is_night", dtype=Int64),
        Field(name="is_weekend", dtype=Int64),
        Field(name="is_foreign", dtype=Int64),
        Field(name="seconds_since_last_transaction", dtype=Int64),
    ],
    mode="python",
    description="Features of the transaction itself against the customer's habits, computed by "
    "the same code when a training set is built and when a payment is scored.",
)
def transaction_context(inputs: dict[str, Any]) -> dict[str, Any]:
    """Batch mode: every input is a list with one value per transaction."""

    def ratio(amount: float | None, mean: float | None) -> float | None:
        return None if amount is None or not mean else amount / mean

    def foreign(country: str | None, home: str | None) -> int | None:
        return None if country is None or home is None else int(country != home)

    def since(now: int | None, last: int | None) -> int | None:
        return None if now is None or last is None else now - last

    epochs = inputs["transaction_epoch_s"]
    hours = [None if t is None else t // 3600 % 24 for t in epochs]
    # 1970-01-01 was a Thursday: day 3 of a Monday-first week.
    weekdays = [None if t is None else (t // 86_400 + 3) % 7 for t in epochs]
    return {
        "amount_to_customer_mean": list(map(ratio, inputs["amount"], inputs["amount_mean_30d"])),
        "hour_of_day": hours,
        "is_night": [None if h is None else int(h < 6) for h in hours],
        "is_weekend": [None if d is None else int(d >= 5) for d in weekdays],
        "is_foreign": list(map(foreign, inputs["country"], inputs["home_country"])),
        "seconds_since_last_transaction": list(
            map(since, inputs["transaction_epoch_s"], inputs["last_transaction_epoch_s"])
        ),
    }


# --- Feature services -------------------------------------------------------------------------

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        customer_behaviour[
            [
                "txn_count_1h",
                "txn_count_24h",
                "txn_count_7d",
                "txn_count_30d",
                "amount_sum_1h",
                "amount_sum_24h",
                "amount_mean_7d",
                "amount_mean_30d",
                "amount_std_30d",
                "amount_max_30d",
                "distinct_merchants_24h",
                "home_country",
                "last_transaction_epoch_s",
            ]
        ],
        merchant_risk[
            [
                "merchant_txn_count_24h",
                "merchant_txn_count_7d",
                "merchant_amount_mean_7d",
                "merchant_matured_txn_count",
                "merchant_chargeback_rate",
            ]
        ],
        transaction_context[
            [
                "amount_to_customer_mean",
                "hour_of_day",
                "is_foreign",
                "seconds_since_last_transaction",
            ]
        ],
    ],
    description="The features of the first fraud model, kept as they were so its models still "
    "score: a service never changes meaning.",
    tags={"owner": "team:ml-platform"},
)

fraud_model_v2 = FeatureService(
    name="fraud_model_v2",
    features=[customer_behaviour, merchant_risk, transaction_context],
    description="Every feature the fraud model v2 is trained and served with: v1's, the mean "
    "amount over 24 h, night and weekend flags, and the merchant's fraud rates one label delay "
    "back. A new model that needs other features gets a new service; this one never changes "
    "meaning.",
    tags={"owner": "team:ml-platform"},
)
