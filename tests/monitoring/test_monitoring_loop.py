"""End-to-end: the champion watched day by day on a simulated clock, retrained when drift hurts.

History and a first champion are built directly; from then on only the daemon's ticks act
(``support.loop.LoopDriver``): the daily schedule ingests, automation scores and reports,
``retraining_sensor`` requests a training set, automation trains, gates and promotes.
"""

import pytest
from dagster import AssetSelection, instance_for_test
from support.harness import LocalPlatform, days
from support.loop import LoopDriver

from resources.model_registry import PREVIOUS_CHAMPION
from resources.monitoring_policy import MonitoringPolicy
from resources.sources.systems import ScenarioConfig

pytestmark = pytest.mark.e2e

LABEL_DELAY = 3
HISTORY = days("2026-01-01", 30)
LIVE = days("2026-01-31", 30)
COVARIATE_SHIFT = ScenarioConfig(
    kind="covariate_drift", start="2026-02-03", end="2026-02-06", intensity=0.3
)
CONCEPT_DRIFT = ScenarioConfig(
    kind="concept_drift", start="2026-02-10", end="2026-03-31", intensity=1.0
)
CHAIN = AssetSelection.assets(
    "training_set", "candidate_model", "evaluation_report", "production_model"
)


def test_drift_is_detected_and_one_retraining_promotes_a_new_champion(tmp_path):
    with instance_for_test() as instance:
        platform = LocalPlatform(
            instance,
            tmp_path,
            rows_per_day=3_000,
            label_delay_days=LABEL_DELAY,
            now="2026-01-31T01:00:00+00:00",
        )
        platform.monitoring = MonitoringPolicy(drift_report_rows=0, retraining_window_days=10)
        scenarios = [COVARIATE_SHIFT, CONCEPT_DRIFT]
        platform.ingest_with_features(HISTORY)
        assert platform.materialize(AssetSelection.assets("feature_store_registry")).success
        first = platform.materialize(
            CHAIN, run_config={"ops": {"training_set": {"config": {"days": 24}}}}
        )
        assert first.success
        assert str(platform.registry.champion().version) == "1"
        driver = LoopDriver(platform, scenarios)
        for day in LIVE:
            driver.day(day)
        for event in driver.events:
            print(event)
        champion = platform.registry.champion()
        assert champion is not None and str(champion.version) == "2"
        assert str(platform.registry.aliased(PREVIOUS_CHAMPION).version) == "1"
