"""Asset-graph tests of the feature stage: from ingested days to an online store and a
point-in-time training set, with the skew check guarding the two paths.

One temporary instance and data folder per module: thirteen days are ingested with a 3-day label
delay, features are computed per day, the registry applied and the online store loaded once.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, AssetSelection, instance_for_test
from support.harness import LocalPlatform, days

from platform_assets.common.datasets import content_hash
from platform_assets.common.keys import TRAINING_SET
from platform_assets.features.online_features import SKEW_CHECK
from resources.feature_store import FEATURE_REPO

pytestmark = pytest.mark.asset_graph

INGESTED = days("2026-01-01", 13)
NOW = "2026-01-14T06:00:00+00:00"
LABEL_DELAY = 3
STORE = AssetSelection.assets("feature_store_registry", "online_features")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    with instance_for_test() as instance:
        local = LocalPlatform(
            instance,
            tmp_path_factory.mktemp("flywheel"),
            rows_per_day=400,
            now=NOW,
            label_delay_days=LABEL_DELAY,
        )
        local.ingest_with_features(INGESTED)
        yield local


def skew(result) -> tuple[bool, dict]:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == SKEW_CHECK]
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def training_set_config(**config) -> dict:
    return {"ops": {"training_set": {"config": config}}}


def test_features_are_written_per_day_as_the_views_sources(platform):
    lake = Path(platform.data_dir, "lake")
    assert sorted(p.stem for p in (lake / "customer_features").glob("*.parquet")) == INGESTED
    customers = pl.read_parquet(lake / "customer_features" / "2026-01-13.parquet")
    validated = pl.read_parquet(lake / "validated_transactions" / "2026-01-13.parquet")
    assert customers.height == validated.height  # one row per validated transaction


def test_skew_check_passes_on_clean_data(platform):
    result = platform.materialize(STORE)
    assert result.success
    passed, metadata = skew(result)
    assert passed, metadata["mismatches"]
    assert metadata["entities_compared"] == 200
    assert metadata["features_compared"] >= 20
    # No training set yet: the offline side is the join training_set uses by default.
    assert metadata["offline_engine"] == "polars"


def test_training_set_holds_matured_transactions_with_point_in_time_features(platform):
    assert platform.materialize(STORE).success
    result = platform.materialize(
        AssetSelection.assets("training_set"), run_config=training_set_config(days=7)
    )
    assert result.success
    rows = pl.read_parquet(Path(platform.data_dir, "lake", "training_set.parquet"))
    # 2026-01-14 06:00 with a 3-day label window: the last matured day is 01-10.
    assert rows["event_timestamp"].dt.date().max().isoformat() == "2026-01-10"
    assert rows["event_timestamp"].dt.date().min().isoformat() == "2026-01-04"
    lake = Path(platform.data_dir, "lake")
    validated = pl.concat(
        pl.read_parquet(lake / "validated_transactions" / f"{day}.parquet")
        for day in days("2026-01-04", 7)
    )
    assert rows.height == validated.height
    charged = pl.concat(
        pl.read_parquet(lake / "fraud_labels" / f"{day}.parquet") for day in days("2026-01-04", 10)
    )
    expected_frauds = validated.join(charged, on="transaction_id", how="semi").height
    assert rows["is_fraud"].sum() == expected_frauds > 0
    # Each row's customer features come from strictly earlier payments, never its own.
    last_seen = rows.filter(pl.col("last_transaction_epoch_s").is_not_null())
    assert (last_seen["last_transaction_epoch_s"] <= last_seen["transaction_epoch_s"]).all()
    assert rows["txn_count_30d"].null_count() < rows.height


def test_training_set_refuses_labels_that_have_not_matured(platform):
    result = platform.materialize(
        AssetSelection.assets("training_set"),
        run_config=training_set_config(last_day="2026-01-12", days=2),
    )
    assert not result.success
    assert "too recent" in str(result.get_step_failure_events()[0].step_failure_data.error)


def test_training_set_rebuild_keeps_its_data_version_with_either_engine(platform):
    """Same rows, same hash: rebuilt, and built by Feast's own join instead of ours."""
    versions = []
    for engine in ("polars", "polars", "feast"):
        result = platform.materialize(
            AssetSelection.assets("training_set"),
            run_config=training_set_config(days=3, engine=engine),
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        versions.append(event.materialization.tags["dagster/data_version"])
    assert versions[0] == versions[1] == versions[2]


def test_the_skew_check_replays_the_join_the_latest_training_set_was_built_with(platform):
    """Online values are held to the offline values a model was trained on, engine and all."""
    for engine in ("feast", "polars"):
        built = platform.materialize(
            AssetSelection.assets("training_set"),
            run_config=training_set_config(days=2, engine=engine),
        )
        assert built.success
        passed, metadata = skew(platform.materialize(STORE))
        assert passed, metadata["mismatches"]
        assert metadata["offline_engine"] == engine


def test_every_training_set_is_kept_by_its_content_and_the_latest_is_current(platform):
    lake = platform.defs.resources["lake"]
    assert platform.materialize(AssetSelection.assets("feature_store_registry")).success
    built = {}
    for window in (4, 2, 4):
        result = platform.materialize(
            AssetSelection.assets("training_set"), run_config=training_set_config(days=window)
        )
        assert result.success
        (event,) = result.asset_materializations_for_node("training_set")
        version = event.tags["dagster/data_version"]
        assert event.metadata["version"].value == version
        assert event.metadata["version_path"].value == f"training_set/versions/{version}.parquet"
        # The last matured day is 2026-01-10 (see above); the window ends there.
        assert event.metadata["first_day"].value == {4: "2026-01-07", 2: "2026-01-09"}[window]
        built[window] = version

    kept = lake.versions(TRAINING_SET)
    assert {built[4], built[2]} <= set(kept)
    assert len(kept) == len(set(kept)), "an identical rebuild is stored once"
    assert lake.current_version(TRAINING_SET) == built[4]
    # An earlier training set stays readable as it was built, under its content hash.
    earlier = lake.read_version(TRAINING_SET, None, built[2])
    assert content_hash(earlier) == built[2]
    assert earlier["event_timestamp"].dt.date().min().isoformat() == "2026-01-09"


def test_skew_check_fails_when_a_definition_changes_without_rematerializing(platform, tmp_path):
    """A feature view moved to a new computation, applied, but the online store not reloaded."""
    shutil.copytree(platform.data_dir, tmp_path / "data")
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    lake = tmp_path / "data" / "lake"
    (lake / "customer_features_v2").mkdir()
    for path in (lake / "customer_features").glob("*.parquet"):
        pl.read_parquet(path).with_columns(pl.col("amount_mean_30d") * 1.1).write_parquet(
            lake / "customer_features_v2" / path.name
        )
    changed = LocalPlatform(
        platform.instance,
        tmp_path / "data",
        rows_per_day=400,
        feature_repo=repo,
        now=NOW,
        label_delay_days=LABEL_DELAY,
    )
    result = changed.materialize(STORE)
    assert skew(result)[0]  # before the change the stores agree
    definitions = repo / "fraud_detection.py"
    definitions.write_text(
        definitions.read_text().replace('"customer_features" / "*', '"customer_features_v2" / "*')
    )
    assert changed.materialize(AssetSelection.assets("feature_store_registry")).success
    result = changed.materialize(AssetSelection.checks_for_assets(AssetKey("online_features")))
    passed, metadata = skew(result)
    assert not passed
    assert metadata["mismatching_features"] == "amount_mean_30d, amount_to_customer_mean"
    # Reloading the online store under the new definitions brings the two paths together again.
    result = changed.materialize(STORE)
    (online,) = result.asset_materializations_for_node("online_features")
    assert online.metadata["full_reload"].value is True
    assert skew(result)[0]
