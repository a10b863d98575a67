"""The Feast feature store as assets: the applied registry and the online store.

``feature_store_registry`` applies ``feature_repo/``. Its code version, and those of the online
store and the training set, carry a hash of the definition files, so editing a feature view
shows all three stale in Dagster at once (and what is built on them, once they are rebuilt).
``online_features`` loads what the offline tables gained since its last run into the online
store, or reloads it whole when the applied views changed, and its blocking check
``training_serving_skew`` proves the two stores agree: the values a model is trained on are the
values it is served.
"""

import datetime
from pathlib import Path
from typing import cast, get_args

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetRecordsFilter,
    AssetSelection,
    AutomationCondition,
    DataVersion,
    EventLogRecord,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from platform_assets.common.catalog import DAILY_FRESHNESS, FEATURES, catalog
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    FEATURE_STORE_REGISTRY,
    MERCHANT_FEATURES,
    TRAINING_SET,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.common.markdown import to_markdown
from platform_assets.features.skew import feature_mismatches
from platform_assets.features.training_set import TrainingSetConfig
from resources.clock import Clock
from resources.feature_store import (
    FEATURE_REPO,
    Engine,
    FeatureStoreResource,
    definitions_version,
)
from resources.lake import Lake

SKEW_CHECK = "training_serving_skew"
# Metadata key: the fingerprint of the views the online store was last loaded under.
VIEWS_VERSION = "applied_views_version"
# Entities compared by the skew check, and how far back it looks for a day to draw them from.
SKEW_SAMPLE_SIZE = 200
SKEW_LOOKBACK_DAYS = 7
# `feast apply` on first start (a failed apply waits for a person) and after every change of
# the definitions.
APPLY_ON_CHANGE = (
    (AutomationCondition.missing() & ~AutomationCondition.execution_failed())
    | AutomationCondition.code_version_changed().since(
        AutomationCondition.newly_requested() | AutomationCondition.newly_updated()
    )
) & ~AutomationCondition.in_progress()
# Reload the online store when the registry or any day's feature rows change, once a day of
# rows exists. Eager alone would wait for every upstream partition, which daily history never has.
LOAD_ON_NEW_ROWS = AutomationCondition.eager().without(
    ~AutomationCondition.any_deps_missing()
) & AutomationCondition.any_deps_match(~AutomationCondition.missing()).allow(
    AssetSelection.assets(CUSTOMER_FEATURES)
)


def feature_store_registry(
    context: AssetExecutionContext, feature_store: FeatureStoreResource
) -> MaterializeResult:
    """The Feast registry as applied from ``feature_repo/``: entities, views, services.

    Materializing it is ``feast apply``. Its code version is the hash of the definitions, so a
    changed feature view shows it, the online store and the training set as stale.
    """
    diff = feature_store.apply()
    context.log.info(f"feast apply:\n{diff}")
    service = feature_store.service()
    features = pl.DataFrame(
        [
            {"view": projection.name, "feature": feature.name, "type": str(feature.dtype)}
            for projection in service.feature_view_projections
            for feature in projection.features
        ]
    )
    return MaterializeResult(
        data_version=DataVersion(definitions_version(feature_store.repo_path)),
        metadata={
            "feature_service": MetadataValue.text(service.name),
            "features": MetadataValue.md(to_markdown(features, limit=100)),
            "feature_count": MetadataValue.int(features.height),
            "changes": MetadataValue.md(f"```\n{diff.strip() or 'no changes'}\n```"),
            "repository": MetadataValue.path(feature_store.repo_path),
        },
    )


def online_features(
    context: AssetExecutionContext, feature_store: FeatureStoreResource, clock: Clock
) -> MaterializeResult:
    """The latest feature values per customer and merchant, served to the scoring endpoint.

    Each run loads only the rows the offline tables gained since the previous one (Feast's
    incremental materialization), up to the end of the latest day of feature rows (never past
    the platform clock's now): rows arrive a whole day at a time, so a load that stopped at the
    clock's now would leave the next day's first hours behind it, never to be loaded. It
    reloads each view's whole TTL instead when the applied views have changed since the last
    load (Feast keeps a view's materialized intervals across an apply, so an incremental load
    would keep serving values computed under the old definitions), or when rows were stored for
    a day before the last load's end (a backfill, such as the history of a first start, which an
    incremental load would skip).
    """
    latest = context.instance.fetch_materializations(context.asset_key, limit=1).records
    previous = latest[0] if latest else None
    end = _rows_until(context, clock)
    views = feature_store.applied_views_version()
    metadata = (
        previous.asset_materialization.metadata
        if previous and previous.asset_materialization
        else {}
    )
    loaded = metadata.get(VIEWS_VERSION)
    backfilled = _backfilled_days(context, previous)
    reload = (loaded is not None and loaded.value != views) or bool(backfilled)
    intervals = feature_store.materialize(end, reload=reload)
    table = pl.DataFrame(
        [
            {
                "view": view,
                "from": str(interval[0]) if interval else "(already current)",
                "to": str(interval[1]) if interval else "",
            }
            for view, interval in intervals.items()
        ]
    )
    context.log.info(
        f"{'reloaded' if reload else 'materialized'} up to {end.isoformat()}: {intervals}"
    )
    return MaterializeResult(
        metadata={
            "materialized_until": MetadataValue.timestamp(end),
            "intervals": MetadataValue.md(to_markdown(table)),
            "full_reload": MetadataValue.bool(reload),
            "backfilled_days": MetadataValue.text(", ".join(backfilled) or "none"),
            VIEWS_VERSION: MetadataValue.text(views),
        }
    )


def training_serving_skew(
    context: AssetCheckExecutionContext, feature_store: FeatureStoreResource, lake: Lake
) -> AssetCheckResult:
    """Serve and replay the same entities, and compare every feature value by value.

    The replay is the point-in-time join training_set uses (metadata ``offline_engine``): the
    engine the latest training set was built with, or training_set's default before the first.
    """
    as_of = _materialized_until(feature_store)
    sample = _skew_sample(lake, as_of)
    if sample is None:
        # An empty instance's first load: nothing is served yet, so nothing can be skewed.
        return AssetCheckResult(
            passed=True,
            metadata={"as_of": MetadataValue.timestamp(as_of), "entities_compared": 0},
            description=(
                f"Nothing to compare yet: no validated_transactions in the {SKEW_LOOKBACK_DAYS} "
                "days before the online store's end; compared on the next load."
            ),
        )
    engine = _training_engine(context)
    online = feature_store.online_features(sample.drop("event_timestamp").to_dicts())
    offline = feature_store.historical_features(sample.with_row_index("sample_row"), engine).sort(
        "sample_row"
    )
    mismatches = feature_mismatches(online, offline, feature_store.feature_names())
    passed = mismatches.is_empty()
    context.log.info(f"{mismatches.height} mismatching values over {sample.height} entities")
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "as_of": MetadataValue.timestamp(as_of),
            "offline_engine": MetadataValue.text(engine),
            "entities_compared": MetadataValue.int(sample.height),
            "features_compared": MetadataValue.int(len(feature_store.feature_names())),
            "mismatching_values": MetadataValue.int(mismatches.height),
            "mismatching_features": MetadataValue.text(
                ", ".join(mismatches["feature"].unique().sort()) or "none"
            ),
            "mismatches": MetadataValue.md(to_markdown(mismatches)),
        },
        description=(
            "online and offline features agree"
            if passed
            else f"{mismatches.height} values differ between the online and offline stores"
        ),
    )


def build_feature_store_assets(repo_path: Path = FEATURE_REPO) -> list:
    """The registry, the online store and its skew check for a Feast repository.

    Their code versions carry the hash of the repository's definitions: the registry applies
    them and the online store materializes them, so a changed view marks both stale.
    """
    version = definitions_version(repo_path)
    common = catalog(FEATURES)
    registry = asset(
        name=FEATURE_STORE_REGISTRY.path[-1],
        kinds={"feast"},
        code_version=version,
        automation_condition=APPLY_ON_CHANGE,
        **common,
    )(feature_store_registry)
    online = asset(
        kinds={"feast", "sqlite"},
        code_version=f"1-{version}",
        automation_condition=LOAD_ON_NEW_ROWS,
        # A day's rows land once a day; a store older than a day and a bit serves stale features.
        freshness_policy=DAILY_FRESHNESS,
        deps=[FEATURE_STORE_REGISTRY, CUSTOMER_FEATURES, MERCHANT_FEATURES],
        **common,
    )(online_features)
    skew = asset_check(
        asset=online,
        name=SKEW_CHECK,
        blocking=True,
        # Runs with every (automated) load of the online store, in the same run.
        automation_condition=AutomationCondition.eager(),
        description=(
            "For a sample of recent transactions, every feature of the model's feature service "
            "read from the online store equals the offline store's value as of the same instant, "
            "replayed by the point-in-time join training_set uses."
        ),
    )(training_serving_skew)
    return [registry, online, skew]


def _rows_until(context: AssetExecutionContext, clock: Clock) -> datetime.datetime:
    """The end of the latest day with customer feature rows, or the clock's now if earlier."""
    stored = context.instance.get_materialized_partitions(CUSTOMER_FEATURES)
    now = clock.now()
    if not stored:
        return now
    last = datetime.date.fromisoformat(max(stored)) + datetime.timedelta(days=1)
    return min(now, datetime.datetime.combine(last, datetime.time(), tzinfo=datetime.UTC))


def _backfilled_days(context: AssetExecutionContext, previous: EventLogRecord | None) -> list[str]:
    """Days of feature rows stored since the last load that begin before that load's end."""
    if previous is None or previous.asset_materialization is None:
        return []
    until = float(previous.asset_materialization.metadata["materialized_until"].value)  # type: ignore[arg-type]
    days = set()
    for key in (CUSTOMER_FEATURES, MERCHANT_FEATURES):
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=previous.storage_id), limit=10_000
        ).records
        days.update(r.partition_key for r in records if r.partition_key)
    return sorted(
        day
        for day in days
        if datetime.datetime.combine(
            datetime.date.fromisoformat(day), datetime.time(), tzinfo=datetime.UTC
        ).timestamp()
        < until
    )


def _training_engine(context: AssetCheckExecutionContext) -> Engine:
    """The engine of the latest training set's join, or training_set's default before one."""
    latest = context.instance.get_latest_materialization_event(TRAINING_SET)
    materialization = latest.asset_materialization if latest else None
    recorded = materialization.metadata.get("retrieval_engine") if materialization else None
    if recorded is not None and recorded.value in get_args(Engine):
        return cast(Engine, recorded.value)
    return TrainingSetConfig.model_fields["engine"].default


def _materialized_until(feature_store: FeatureStoreResource) -> datetime.datetime:
    """The instant up to which every view of the online store was last loaded."""
    ends = [view.most_recent_end_time for view in feature_store.store().list_feature_views()]
    if not ends or any(end is None for end in ends):
        raise RuntimeError("the online store has never been materialized: run online_features")
    return min(end for end in ends if end is not None)


def _skew_sample(lake: Lake, as_of: datetime.datetime) -> pl.DataFrame | None:
    """Recent real transactions as entity rows (keys and request fields), scored at ``as_of``.

    None when no day of the lookback is stored.
    """
    key = VALIDATED_TRANSACTIONS
    recent = [
        (as_of.date() - datetime.timedelta(days=back)).isoformat()
        for back in range(1, SKEW_LOOKBACK_DAYS + 1)
    ]
    stored = lake.stored_partitions(key, recent)
    if not stored:
        return None
    transactions = lake.read_dataset(key, stored[0])
    country = "country" if "country" in transactions.columns else pl.lit(None, dtype=pl.String)
    return transactions.sample(min(SKEW_SAMPLE_SIZE, transactions.height), seed=0).select(
        "customer_id",
        "merchant_id",
        "amount",
        country=country,
        transaction_epoch_s=pl.lit(int(as_of.timestamp()), dtype=pl.Int64),
        event_timestamp=pl.lit(as_of, dtype=pl.Datetime("us", "UTC")),
    )
