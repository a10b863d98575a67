"""Feature windows are complete or say why not, and a training set has no holes.

A day's feature rows read the trailing days of transactions (and labels) their windows cover. A
day computed while an earlier day of its window is still on its way fails, naming that day, and
automation computes it again once the day lands; the days before the platform's history began
are no hole, and a day the contract halted is left out and named (failing a month of days over
one bad batch would stop scoring). A training set refuses a window with a missing day or missing
feature rows, naming them, and the bootstrap waits for feature rows still to be rebuilt.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    SensorResult,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
    instance_for_test,
)
from support.harness import DAY_FEATURES, LocalPlatform, days, scenario

from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    MERCHANT_FEATURES,
    RAW_TRANSACTIONS,
    TRANSACTION_BASELINE,
    VALIDATED_TRANSACTIONS,
)
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry
from sensors.bootstrap import bootstrap_sensor

pytestmark = pytest.mark.asset_graph

FEATURES = DAY_FEATURES
NOW = "2026-01-14T06:00:00+00:00"
LABEL_DELAY = 3


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def local(instance: DagsterInstance, data: Path, now: str = NOW) -> LocalPlatform:
    return LocalPlatform(instance, data, rows_per_day=200, now=now, label_delay_days=LABEL_DELAY)


def errors(result: ExecuteInProcessResult) -> str:
    """Every step failure's message, one a line."""
    return "\n".join(
        str(event.step_failure_data.error.message)  # type: ignore[union-attr]
        for event in result.get_step_failure_events()
    )


def feature_metadata(result: ExecuteInProcessResult, table: AssetKey) -> dict:
    (event,) = result.asset_materializations_for_node(table.path[-1])
    return {key: value.value for key, value in event.metadata.items()}


def rebuilds(platform: LocalPlatform, cursor: str | None = None) -> tuple[dict, str | None]:
    """One automation tick over the feature tables: the partitions it requests, per table."""
    result = evaluate_automation_conditions(
        defs=platform.defs, instance=platform.instance, asset_selection=FEATURES, cursor=cursor
    )
    requested = {
        key.path[-1]: sorted(result.get_requested_partitions(key))
        for key in (CUSTOMER_FEATURES, MERCHANT_FEATURES)
        if result.get_num_requested(key)
    }
    return requested, result.cursor


def test_a_day_computed_before_the_day_before_it_landed_fails_and_is_rebuilt_once_it_lands(
    instance: DagsterInstance, tmp_path: Path
):
    platform = local(instance, tmp_path)
    # Two history days ingested side by side, as the bootstrap does: 01-01's run is under way
    # (nothing of it stored yet) when 01-02's run reaches its feature rows.
    job = platform.defs.resolve_job_def("ingestion_job")
    under_way = instance.create_run_for_job(job, tags={"dagster/partition": "2026-01-01"})
    assert platform.ingest("2026-01-02").success

    early = platform.materialize(FEATURES, "2026-01-02")

    assert not early.success
    message = errors(early)
    for table in ("customer_features", "merchant_features"):
        assert f"{table} 2026-01-02" in message
    assert "validated_transactions 2026-01-01" in message
    _, cursor = rebuilds(platform)

    # 01-01 lands: its run finishes, and automation computes 01-02 again, now complete.
    instance.report_run_canceled(under_way)
    assert platform.ingest("2026-01-01").success
    requested, cursor = rebuilds(platform, cursor)
    assert requested == {"customer_features": ["2026-01-02"], "merchant_features": ["2026-01-02"]}
    rebuilt = platform.materialize(FEATURES, "2026-01-02")
    assert rebuilt.success
    metadata = feature_metadata(rebuilt, CUSTOMER_FEATURES)
    assert metadata["validated_transactions_days_missing"] == "none"
    assert rebuilds(platform, cursor)[0] == {}


def test_the_days_before_the_first_ingested_day_are_no_hole(
    instance: DagsterInstance, tmp_path: Path
):
    """The first days of history have no earlier history (nor the first business day)."""
    platform = local(instance, tmp_path)
    for day in ("2026-01-05", "2026-01-06"):
        assert platform.ingest(day).success
        result = platform.materialize(FEATURES, day)
        assert result.success, errors(result)
    metadata = feature_metadata(result, CUSTOMER_FEATURES)
    assert metadata["validated_transactions_days_read"] == 2
    # The day before's activity, stored by its run: read, not derived again.
    assert metadata["customer_daily_activity_days_read"] == 1
    assert metadata["customer_daily_activity_days_derived"] == "none"


def test_the_days_before_the_bootstrap_history_are_no_hole(
    instance: DagsterInstance, tmp_path: Path
):
    """An instance back after a long pause ingests only the history a model needs (30 + 14 +
    3 + 1 days before now: from 2026-01-12 here), not the days since its last one."""
    platform = local(instance, tmp_path, now="2026-03-01T06:00:00+00:00")
    for day in ("2026-01-05", "2026-01-12", "2026-01-13"):
        assert platform.ingest(day).success
    for day, read in (("2026-01-12", 2), ("2026-01-13", 3)):
        result = platform.materialize(FEATURES, day)
        assert result.success, errors(result)
        metadata = feature_metadata(result, CUSTOMER_FEATURES)
        assert metadata["validated_transactions_days_read"] == read
        # 01-05's activity was never stored (its features were not computed): derived from its
        # payments, as on an instance from before customer_daily_activity.
        assert metadata["customer_daily_activity_days_derived"] == "2026-01-05"


def test_a_halted_day_is_left_out_and_named_and_its_own_rows_are_not_retried(
    instance: DagsterInstance, tmp_path: Path
):
    platform = local(instance, tmp_path)
    assert platform.ingest("2026-01-01").success
    assert not platform.ingest("2026-01-02", scenario("schema_change", "2026-01-02")).success
    assert platform.ingest("2026-01-03").success
    assert platform.materialize(FEATURES, "2026-01-01").success
    assert not platform.materialize(FEATURES, "2026-01-02").success  # its own day is halted

    result = platform.materialize(FEATURES, "2026-01-03")

    assert result.success, errors(result)
    metadata = feature_metadata(result, CUSTOMER_FEATURES)
    assert metadata["validated_transactions_days_missing"] == "2026-01-02"
    requested, cursor = rebuilds(platform)
    assert requested == {}
    assert platform.ingest("2026-01-04").success
    assert rebuilds(platform, cursor)[0] == {}


def test_a_training_set_with_holes_is_refused_naming_them(instance: DagsterInstance, tmp_path):
    platform = local(instance, tmp_path)
    halted = "2026-01-06"
    for day in days("2026-01-01", 13):
        if day == halted:
            assert not platform.ingest(day, scenario("schema_change", day)).success
            continue
        assert platform.ingest(day).success
        if day != "2026-01-08":  # its feature rows not computed (yet)
            assert platform.materialize(FEATURES, day).success, day
    assert platform.materialize(AssetSelection.assets("feature_store_registry")).success

    def training_set(**config):
        return platform.materialize(
            AssetSelection.assets("training_set"),
            run_config={"ops": {"training_set": {"config": config}}},
        )

    # 2026-01-14 with a 3-day label delay: the last matured day is 01-10.
    refused = training_set(days=7)
    assert not refused.success
    message = errors(refused)
    assert "validated_transactions: 2026-01-06" in message
    assert "customer_features: 2026-01-08" in message
    assert "merchant_features: 2026-01-08" in message

    # A window after the halted day needs every feature row its joins read: 01-08's too.
    assert "customer_features: 2026-01-08" in errors(training_set(days=2))
    assert platform.materialize(FEATURES, "2026-01-08").success
    built = training_set(days=2)
    assert built.success, errors(built)


# The bootstrap: with one maturity day the history is 30 + 14 + 1 + 1 = 46 days before today.
BOOTSTRAP_NOW = "2026-03-20T04:00:00+00:00"
HISTORY = days("2026-02-02", 46)


def test_the_bootstrap_waits_for_feature_rows_being_rebuilt(
    instance: DagsterInstance, tmp_path: Path
):
    """A day whose feature rows failed (an earlier day was still on its way) holds the first
    training set until automation has computed them again."""
    registry = ModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    failed = HISTORY[-5]
    for key in (TRANSACTION_BASELINE, RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS):
        for day in [None] if key == TRANSACTION_BASELINE else HISTORY:
            instance.report_runless_asset_event(AssetMaterialization(key, partition=day))
    for key in (CUSTOMER_FEATURES, MERCHANT_FEATURES):
        for day in HISTORY:
            if day != failed:
                instance.report_runless_asset_event(AssetMaterialization(key, partition=day))
    # The day's feature run failed: its lake (this test's) holds none of its history.
    platform = local(instance, tmp_path / "data", now=BOOTSTRAP_NOW)
    assert not platform.materialize(FEATURES, failed).success

    def tick() -> SensorResult | SkipReason:
        context = build_sensor_context(
            instance=instance,
            resources={
                "clock": Clock(frozen_at=BOOTSTRAP_NOW),
                "label_policy": LabelPolicy(maturity_days=1),
                "model_registry": registry,
            },
        )
        result = bootstrap_sensor(context)
        assert isinstance(result, SensorResult | SkipReason)
        return result

    waiting = tick()
    assert isinstance(waiting, SkipReason), waiting
    assert failed in (waiting.skip_message or "")

    for key in (CUSTOMER_FEATURES, MERCHANT_FEATURES):
        instance.report_runless_asset_event(AssetMaterialization(key, partition=failed))
    ready = tick()
    assert isinstance(ready, SensorResult) and ready.run_requests, ready
