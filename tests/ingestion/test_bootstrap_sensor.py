"""The bootstrap sensor's steps on real instance state, from an empty instance to a training set.

One test plays the first step for real: the ingestion sensor's first days are ingested, the
bootstrap sensor's baseline request is materialized as the daemon would launch it, and the
baseline records who accepted it. The later steps only read partition statuses, so those tests
record runless materializations instead of ingesting 46 days.
"""

import datetime
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)
from support.harness import LocalPlatform, days

from platform_assets.common.bootstrap import (
    FEATURE_WINDOW_DAYS,
    LANDING_DELAY,
    history_days,
    landed_days,
)
from platform_assets.common.keys import (
    CUSTOMER_FEATURES,
    RAW_TRANSACTIONS,
    TRAINING_SET,
    TRANSACTION_BASELINE,
    VALIDATED_TRANSACTIONS,
)
from platform_assets.definitions import defs, stage_assets
from platform_assets.features import engineering
from platform_assets.ingestion.delivery_checks import DRIFT_CHECK
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry
from sensors.bootstrap import bootstrap_sensor
from sensors.ingestion import ingestion_sensor

pytestmark = pytest.mark.sensor

# With one maturity day the history window is 30 + 14 + 1 + 1 = 46 days before today: at NOW,
# 2026-02-02 .. 2026-03-19.
NOW = "2026-03-20T04:00:00+00:00"
POLICY = LabelPolicy(maturity_days=1)
WINDOW = days("2026-02-02", 46)
FIRST_DAYS = WINDOW[:3]


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow store holding ``fraud_model`` version 1, no alias: no champion yet.

    Creating the SQLite schema takes seconds; each test copies this file instead.
    """
    folder = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    client = registry.client()
    client.create_registered_model(registry.model_name)
    client.create_model_version(registry.model_name, source=str(folder), run_id=None)
    return folder / "mlflow.db"


@pytest.fixture
def registry(mlflow_template: Path, tmp_path: Path) -> Iterator[ModelRegistry]:
    shutil.copy(mlflow_template, tmp_path / "registry.db")
    yield ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_location=str(tmp_path / "artifacts"),
    )


def tick(instance: DagsterInstance, registry: ModelRegistry) -> SensorResult | SkipReason:
    """One evaluation of the bootstrap sensor at ``NOW``."""
    context = build_sensor_context(
        instance=instance,
        resources={
            "clock": Clock(frozen_at=NOW),
            "label_policy": POLICY,
            "model_registry": registry,
        },
    )
    result = bootstrap_sensor(context)
    assert isinstance(result, SensorResult | SkipReason), result
    return result


def ingestion_tick(instance: DagsterInstance) -> list[str]:
    """The days one evaluation of the ingestion sensor at ``NOW`` requests."""
    context = build_sensor_context(
        instance=instance,
        definitions=defs,
        resources={"clock": Clock(frozen_at=NOW), "label_policy": POLICY},
    )
    result = ingestion_sensor(context)
    assert isinstance(result, SensorResult), result
    return [str(r.partition_key) for r in result.run_requests or []]


def skip_message(result: SensorResult | SkipReason) -> str:
    """The skip message of a sensor that skipped, whichever way it returned it."""
    if isinstance(result, SensorResult):
        assert not result.run_requests, result.run_requests
        assert result.skip_reason is not None
        return result.skip_reason.skip_message or ""
    assert isinstance(result, SkipReason), result
    return result.skip_message or ""


def only_request(result: SensorResult | SkipReason) -> RunRequest:
    assert isinstance(result, SensorResult), result
    assert result.run_requests is not None and len(result.run_requests) == 1
    return result.run_requests[0]


def store(instance: DagsterInstance, asset: AssetKey, *partitions: str) -> None:
    """Record materializations of ``asset`` (one per partition, or one when unpartitioned)."""
    for partition in partitions or [None]:
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=partition))


def latest_metadata(instance: DagsterInstance, asset: AssetKey) -> dict:
    event = instance.get_latest_materialization_event(asset)
    assert event is not None and event.asset_materialization is not None
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_the_first_ingested_days_become_the_baseline_accepted_by_bootstrap(
    platform: LocalPlatform, registry: ModelRegistry
):
    assert "(0 so far)" in skip_message(tick(platform.instance, registry))

    # The ingestion sensor's first requests, run as the daemon would.
    assert ingestion_tick(platform.instance) == FIRST_DAYS
    for day in FIRST_DAYS:
        result = platform.ingest(day)
        assert result.success, day
        # Nothing to judge drift against yet: recorded, not a failure that blocks the day.
        drift = next(e for e in result.get_asset_check_evaluations() if e.check_name == DRIFT_CHECK)
        assert drift.passed and "No accepted baseline yet" in (drift.description or "")

    request = only_request(tick(platform.instance, registry))
    assert request.run_key == "bootstrap-baseline-1"
    assert request.asset_selection == [TRANSACTION_BASELINE]
    assert request.tags == {"flywheel/trigger": "bootstrap", "flywheel/acceptance": "bootstrap"}
    config = request.run_config["ops"]["transaction_baseline"]["config"]
    assert config["partitions"] == FIRST_DAYS
    assert "bootstrap" in config["reason"].lower()

    accepted = materialize(
        stage_assets(platform.feature_repo),
        selection=request.asset_selection,
        run_config=request.run_config,
        tags=request.tags,
        resources=platform.resources(),
        instance=platform.instance,
    )
    assert accepted.success
    metadata = latest_metadata(platform.instance, TRANSACTION_BASELINE)
    assert metadata["accepted_by"] == "bootstrap"
    assert metadata["partitions"] == FIRST_DAYS
    assert metadata["reason"] == config["reason"]

    # The next step waits for the rest of the history, which the ingestion sensor now asks for.
    assert "3 of 46 days done (2026-02-02..2026-03-19)" in skip_message(
        tick(platform.instance, registry)
    )
    assert ingestion_tick(platform.instance) == WINDOW[3:]

    # Any later acceptance is a person's.
    assert platform.accept_baseline(FIRST_DAYS[1:], reason="a new normal").success
    assert latest_metadata(platform.instance, TRANSACTION_BASELINE)["accepted_by"] == "a person"


def test_the_baseline_waits_for_three_validated_days_of_the_window(
    instance: DagsterInstance, registry: ModelRegistry
):
    # A day before the window does not count, nor does a day that was fetched but not validated.
    store(instance, VALIDATED_TRANSACTIONS, "2026-01-20", WINDOW[0], WINDOW[2])
    store(instance, RAW_TRANSACTIONS, WINDOW[3])

    assert "(2 so far)" in skip_message(tick(instance, registry))

    store(instance, VALIDATED_TRANSACTIONS, WINDOW[4], WINDOW[5])
    request = only_request(tick(instance, registry))

    config = request.run_config["ops"]["transaction_baseline"]["config"]
    assert config["partitions"] == [WINDOW[0], WINDOW[2], WINDOW[4]]


def test_the_partly_ingested_history_skips_with_its_progress(
    instance: DagsterInstance, registry: ModelRegistry
):
    store(instance, TRANSACTION_BASELINE)
    store(instance, RAW_TRANSACTIONS, *WINDOW[:10])

    assert "10 of 46 days done" in skip_message(tick(instance, registry))

    # Every day but yesterday: still not.
    store(instance, RAW_TRANSACTIONS, *WINDOW[10:-1])
    assert "45 of 46 days done" in skip_message(tick(instance, registry))


def test_the_whole_history_ingested_requests_the_first_training_set(
    instance: DagsterInstance, registry: ModelRegistry
):
    store(instance, TRANSACTION_BASELINE)
    store(instance, RAW_TRANSACTIONS, *WINDOW)

    request = only_request(tick(instance, registry))

    assert request.run_key == "bootstrap-training-set-1"
    assert request.asset_selection == [TRAINING_SET]
    # Its labels are all in: the label feed is ingested up to the window's last day (POLICY:
    # labels within a day).
    last_day = datetime.date.fromisoformat(WINDOW[-1]) - datetime.timedelta(days=1)
    config = {"days": 14, "last_day": last_day.isoformat()}
    assert request.run_config == {"ops": {"training_set": {"config": config}}}
    assert request.tags == {"flywheel/trigger": "bootstrap"}


def test_feature_rows_still_computing_hold_the_training_set(
    platform: LocalPlatform, registry: ModelRegistry
):
    instance = platform.instance
    store(instance, TRANSACTION_BASELINE)
    store(instance, RAW_TRANSACTIONS, *WINDOW[:-1])
    # Yesterday's ingestion run is under way: its raw day is stored, its feature rows are not.
    job = platform.defs.resolve_job_def("ingestion_job")
    instance.create_run_for_job(job, tags={"dagster/partition": WINDOW[-1]})
    store(instance, RAW_TRANSACTIONS, WINDOW[-1])

    assert "45 of 46 days done" in skip_message(tick(instance, registry))

    store(instance, CUSTOMER_FEATURES, WINDOW[-1])
    assert only_request(tick(instance, registry)).run_key == "bootstrap-training-set-1"


def test_a_failed_step_is_tried_again_then_left_to_a_person(
    platform: LocalPlatform, registry: ModelRegistry
):
    instance = platform.instance
    store(instance, TRANSACTION_BASELINE)
    store(instance, RAW_TRANSACTIONS, *WINDOW)
    job = platform.defs.resolve_implicit_global_asset_job_def()

    for attempt in (1, 2, 3):
        assert only_request(tick(instance, registry)).run_key == f"bootstrap-training-set-{attempt}"
        run = instance.create_run_for_job(
            job, asset_selection=frozenset({TRAINING_SET}), tags={"flywheel/trigger": "bootstrap"}
        )
        instance.report_run_failed(run)

    message = skip_message(tick(instance, registry))
    assert "failed 3 times" in message and run.run_id in message


def test_a_training_set_ends_the_bootstrap(instance: DagsterInstance, registry: ModelRegistry):
    store(instance, RAW_TRANSACTIONS, *WINDOW)
    store(instance, TRAINING_SET)

    assert "training set exists" in skip_message(tick(instance, registry))
    # Even without a baseline: no automatic acceptance on a platform that has trained.
    store(instance, VALIDATED_TRANSACTIONS, *WINDOW)
    assert "training set exists" in skip_message(tick(instance, registry))


def test_a_champion_ends_the_bootstrap(instance: DagsterInstance, registry: ModelRegistry):
    store(instance, VALIDATED_TRANSACTIONS, *FIRST_DAYS)
    registry.promote("1")

    assert "Version 1 is champion" in skip_message(tick(instance, registry))


@pytest.mark.unit
def test_the_plan_matches_the_features_and_the_landing_delay():
    assert engineering.CUSTOMER_HISTORY.days == FEATURE_WINDOW_DAYS

    midnight = datetime.datetime(2026, 3, 20, tzinfo=datetime.UTC)
    before = landed_days(midnight + LANDING_DELAY - datetime.timedelta(seconds=1), 1)
    after = landed_days(midnight + LANDING_DELAY, 1)
    assert before[-1] == "2026-03-18"
    assert after[-1] == "2026-03-19"
    assert after[0] == before[0] == "2026-02-02"
    assert len(after) == history_days(1) == 46
    # Clipped to the first business day; nothing has landed before its end.
    assert landed_days(datetime.datetime(2026, 1, 3, 2, tzinfo=datetime.UTC), 1) == [
        "2026-01-01",
        "2026-01-02",
    ]
    assert landed_days(datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC), 1) == []
