"""Declarative automation of the feature store, tick by tick against real materializations.

The registry is applied on first start and whenever the definitions change; the online store is
reloaded (with its skew check) when the registry or a day's feature rows change, and only then.
"""

import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, AssetSelection, evaluate_automation_conditions, instance_for_test
from support.harness import DAY_FEATURES, LocalPlatform

from resources.feature_store import FEATURE_REPO

pytestmark = pytest.mark.sensor

REGISTRY = AssetKey("feature_store_registry")
ONLINE = AssetKey("online_features")
FEATURES = AssetSelection.groups("features")
NOW = "2026-01-03T06:00:00+00:00"


def requested(result) -> set[str]:
    return {key.to_user_string() for key in (REGISTRY, ONLINE) if result.get_num_requested(key)}


def test_registry_applies_on_start_and_change_and_online_store_follows_new_rows(tmp_path: Path):
    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    with instance_for_test() as instance:
        platform = LocalPlatform(
            instance, tmp_path / "data", rows_per_day=200, feature_repo=repo, now=NOW
        )

        def tick(cursor=None):
            return evaluate_automation_conditions(
                defs=platform.defs, instance=instance, asset_selection=FEATURES, cursor=cursor
            )

        first = tick()
        assert requested(first) == {"feature_store_registry"}
        assert platform.materialize(AssetSelection.assets(REGISTRY)).success
        second = tick(first.cursor)
        assert requested(second) == set()  # nothing new to load

        assert platform.ingest("2026-01-02").success
        assert platform.materialize(DAY_FEATURES, "2026-01-02").success
        third = tick(second.cursor)
        assert requested(third) == {"online_features"}
        assert platform.materialize(AssetSelection.assets(ONLINE)).success
        fourth = tick(third.cursor)
        assert requested(fourth) == set()

        definitions = repo / "fraud_detection.py"
        definitions.write_text(
            definitions.read_text().replace("ttl=timedelta(days=7)", "ttl=timedelta(days=8)")
        )
        platform = LocalPlatform(
            instance, tmp_path / "data", rows_per_day=200, feature_repo=repo, now=NOW
        )
        fifth = tick(fourth.cursor)
        assert "feature_store_registry" in requested(fifth)
