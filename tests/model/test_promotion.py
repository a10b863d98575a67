"""Asset-graph tests of promotion alone: production_model on hand-written verdicts.

The verdicts (``canary_release`` and ``canary_analysis`` records) are written into the lake as
those assets write them, and the versions they name are placeholders registered in a real MLflow
store: moving aliases never looks inside a model, so no model is trained here.
"""

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    DagsterInstance,
    ExecuteInProcessResult,
    SourceAsset,
    instance_for_test,
    materialize,
)

from platform_assets.common.keys import CANARY_MODE, DIRECT_MODE, PRODUCTION_MODEL
from platform_assets.model.production_model import PROMOTION_POOL, production_model
from resources.alerting import LocalAlerter
from resources.clock import Clock
from resources.lake import Lake, RecordIOManager
from resources.model_registry import PREVIOUS_CHAMPION, ModelRegistry

pytestmark = pytest.mark.asset_graph

NOW = "2026-03-02T06:00:00+00:00"
# What the instance's dagster.yaml says so that promotions run one at a time (README).
ONE_PROMOTION_AT_A_TIME = """
concurrency:
  pools:
    default_limit: 1
"""


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlflow" / "artifacts"),
    )
    source = Path(registry.artifact_location, "placeholder")
    source.mkdir(parents=True)
    client = registry.client()
    client.create_registered_model(registry.model_name)
    for _ in range(3):
        client.create_model_version(registry.model_name, source=str(source))
    return registry


def write_verdict(lake: Lake, version: str, mode: str, champion: str | None) -> None:
    """The records canary_release and canary_analysis leave: promote ``version``, judged
    against ``champion``."""
    release = {"version": version, "mode": mode, "champion": champion, "reason": "test"}
    analysis = {
        "version": version,
        "mode": mode,
        "champion": champion,
        "verdict": "promote",
        "reason": "test",
        "comparisons": [],
    }
    for name, record in (("canary_release", release), ("canary_analysis", analysis)):
        path = Path(lake.root, "records", f"{name}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record), encoding="utf-8")


def promote(
    tmp_path: Path, registry: ModelRegistry, instance: DagsterInstance | None = None
) -> ExecuteInProcessResult:
    lake = Lake(root=str(tmp_path / "lake"))
    verdicts = [
        SourceAsset(key=name, io_manager_key="record_io_manager")
        for name in ("canary_release", "canary_analysis")
    ]
    resources: dict[str, Any] = {
        "model_registry": registry,
        "record_io_manager": RecordIOManager(lake=lake),
        "clock": Clock(frozen_at=NOW),
        "alerter": LocalAlerter(alerts_file=str(tmp_path / "alerts.jsonl")),
    }
    return materialize(
        [production_model, *verdicts],
        selection=[PRODUCTION_MODEL],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def champion(registry: ModelRegistry) -> str | None:
    version = registry.champion()
    return None if version is None else str(version.version)


def test_a_verdict_against_the_champion_promotes(tmp_path, registry):
    registry.promote("1")
    write_verdict(Lake(root=str(tmp_path / "lake")), "2", DIRECT_MODE, champion="1")

    result = promote(tmp_path, registry)

    assert result.success
    assert champion(registry) == "2"
    assert str(registry.aliased(PREVIOUS_CHAMPION).version) == "1"
    (event,) = result.asset_materializations_for_node("production_model")
    assert event.metadata["previous_champion"].value == "1"


def test_a_verdict_against_a_champion_since_replaced_is_refused(tmp_path, registry):
    registry.promote("1")
    write_verdict(Lake(root=str(tmp_path / "lake")), "2", DIRECT_MODE, champion="1")
    registry.promote("3")  # meanwhile a person (or another release) makes v3 the champion

    result = promote(tmp_path, registry)

    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = str(failure.step_failure_data.error)
    assert "v2 not promoted" in message
    assert "against champion v1" in message and "champion is now v3" in message
    assert champion(registry) == "3"


def test_a_canary_verdict_against_a_champion_since_rolled_back_is_refused(tmp_path, registry):
    registry.promote("1")
    registry.promote("2")
    registry.start_canary("3", 0.1, Clock(frozen_at=NOW).now())
    write_verdict(Lake(root=str(tmp_path / "lake")), "3", CANARY_MODE, champion="2")
    registry.rollback()  # v2 goes; v1 serves again

    result = promote(tmp_path, registry)

    assert not result.success
    assert "champion is now v1" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert champion(registry) == "1"
    assert str(registry.canary().version) == "3", "the canary is left for its analysis to judge"


def test_promotions_wait_for_the_one_slot_of_their_pool(tmp_path, registry):
    assert production_model.op.pool == PROMOTION_POOL
    registry.promote("1")
    write_verdict(Lake(root=str(tmp_path / "lake")), "2", DIRECT_MODE, champion="1")
    with instance_for_test(overrides=yaml.safe_load(ONE_PROMOTION_AT_A_TIME)) as instance:
        # Another run's promotion holds the pool's one slot.
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(PROMOTION_POOL)
        assert storage.get_concurrency_info(PROMOTION_POOL).slot_count == 1
        assert storage.claim_concurrency_slot(PROMOTION_POOL, "other-run", "production_model")
        results: list[ExecuteInProcessResult] = []
        waiting = threading.Thread(
            target=lambda: results.append(promote(tmp_path, registry, instance))
        )
        waiting.start()
        time.sleep(5)
        assert waiting.is_alive() and champion(registry) == "1", "waits while the slot is held"

        storage.free_concurrency_slots_for_run("other-run")
        waiting.join(timeout=120)

    assert not waiting.is_alive()
    assert results[0].success
    assert champion(registry) == "2"
