"""The model registry resource on a real MLflow store: aliases, promotion and rollback."""

from pathlib import Path

import pytest

from resources.model_registry import (
    CHAMPION,
    LOCAL_MLFLOW_UI,
    PREVIOUS_CHAMPION,
    ChampionMoved,
    ModelRegistry,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlflow" / "artifacts"),
    )


def register_versions(registry: ModelRegistry, count: int) -> None:
    """Versions of a placeholder model: aliases do not look inside what they point at."""
    source = Path(registry.artifact_location, "placeholder")
    source.mkdir(parents=True)
    client = registry.client()
    client.create_registered_model(registry.model_name)
    for _ in range(count):
        client.create_model_version(registry.model_name, source=str(source))


def aliases(registry: ModelRegistry) -> dict[str, str]:
    model = registry.client().get_registered_model(registry.model_name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def test_the_experiment_keeps_its_artifacts_in_the_registry_folder(registry, tmp_path):
    first = registry.ensure_experiment()
    assert registry.ensure_experiment() == first  # created once
    experiment = registry.client().get_experiment(first)
    assert experiment.artifact_location == str(tmp_path / "mlflow" / "artifacts")


def test_promotion_keeps_the_replaced_champion_one_rollback_away(registry):
    assert registry.champion() is None  # no model yet
    register_versions(registry, 2)
    assert registry.champion() is None  # no promotion yet

    assert registry.promote("1") is None
    assert aliases(registry) == {CHAMPION: "1"}
    assert registry.promote("2") == "1"
    assert aliases(registry) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}

    assert registry.rollback() == "1"
    assert aliases(registry) == {CHAMPION: "1"}
    with pytest.raises(LookupError, match="no 'previous_champion' alias"):
        registry.rollback()


def test_promoting_the_champion_again_does_not_make_it_its_own_predecessor(registry):
    register_versions(registry, 1)
    registry.promote("1")
    registry.promote("1")
    assert aliases(registry) == {CHAMPION: "1"}


def test_a_promotion_expecting_another_champion_is_refused_and_moves_nothing(registry):
    register_versions(registry, 3)
    assert registry.promote("1", expected_champion=None) is None
    registry.promote("2")  # meanwhile a person makes v2 the champion

    with pytest.raises(
        ChampionMoved, match=r"v3 not promoted: .* against champion v1, .* champion is now v2"
    ):
        registry.promote("3", expected_champion="1")
    assert aliases(registry) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}
    with pytest.raises(ChampionMoved, match=r"against no champion, .* champion is now v2"):
        registry.promote("3", expected_champion=None)

    assert registry.promote("3", expected_champion="2") == "2"
    assert aliases(registry) == {CHAMPION: "3", PREVIOUS_CHAMPION: "2"}


def test_a_versions_holdout_start_comes_from_its_training_run(registry):
    register_versions(registry, 1)  # registered by hand: no run behind it
    assert registry.holdout_start(registry.version("1")) is None

    client = registry.client()
    run = client.create_run(registry.ensure_experiment())
    client.log_param(run.info.run_id, "holdout_start", "2026-01-19T06:00:00+00:00")
    source = str(Path(registry.artifact_location, "placeholder"))
    client.create_model_version(registry.model_name, source=source, run_id=run.info.run_id)
    assert registry.holdout_start(registry.version("2")) == "2026-01-19T06:00:00+00:00"


def test_links_open_the_tracking_servers_ui_unless_told_otherwise(registry):
    assert registry.ui_url() == LOCAL_MLFLOW_UI  # a SQLite store: make mlflow serves its UI
    server = ModelRegistry(tracking_uri="https://mlflow.example.com/")
    assert server.run_url("3", "abc") == "https://mlflow.example.com/#/experiments/3/runs/abc"
    told = ModelRegistry(tracking_uri="https://mlflow.internal", mlflow_ui_url="https://ui.example")
    assert told.version_url("2") == "https://ui.example/#/models/fraud_model/versions/2"
