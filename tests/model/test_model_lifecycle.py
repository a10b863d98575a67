"""Asset-graph tests of training, the champion/challenger gate and promotion on a real MLflow store.

One temporary Dagster instance and lake for the module: 24 simulated days of 10,000 payments with
a 3-day label delay, features per day, the Feast registry and a 20-day training set. Every test
tracks and registers its models in its own fresh MLflow store: SQLite + artifacts on tmp_path, or
for production's setting a real ``mlflow server`` on a free port.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    ExecuteInProcessResult,
    build_sensor_context,
    evaluate_automation_conditions,
    instance_for_test,
)
from support.harness import LocalPlatform, days
from support.servers import free_port, wait_for

from platform_assets.common.datasets import content_hash
from platform_assets.features.labelling import LABEL
from platform_assets.model.evaluation_report import GATE_CHECK
from platform_assets.model.recipe import Hyperparameters, holdout, time_split, train
from platform_assets.monitoring.reference import REFERENCE_FILE
from resources.environments import PROJECT_ROOT
from resources.model_registry import PREVIOUS_CHAMPION, ModelRegistry
from sensors.deployment import promotion_sensor

pytestmark = pytest.mark.asset_graph

NOW = "2026-01-25T06:00:00+00:00"
RELEASE = ("canary_release", "canary_analysis", "production_model")
CHAIN = AssetSelection.assets("candidate_model", "evaluation_report", *RELEASE)
# The on-demand feature view and the raw amount: the payment itself, against the customer's habits.
TRANSACTION_CONTEXT = [
    "amount_to_customer_mean",
    "hour_of_day",
    "is_night",
    "is_weekend",
    "is_foreign",
    "seconds_since_last_transaction",
    "amount",
]
WITHOUT_TRANSACTION_CONTEXT = {
    "excluded_features": TRANSACTION_CONTEXT,
    "monotone_increasing": ["merchant_chargeback_rate"],
}
LOW_FLOORS = {"floors": {"pr_auc": 0.01, "roc_auc": 0.6}}


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[LocalPlatform]:
    with instance_for_test() as instance:
        local = LocalPlatform(
            instance,
            tmp_path_factory.mktemp("flywheel"),
            rows_per_day=10_000,
            now=NOW,
            label_delay_days=3,
        )
        local.ingest_with_features(days("2026-01-01", 24))
        assert local.materialize(AssetSelection.assets("feature_store_registry")).success
        assert local.materialize(
            AssetSelection.assets("training_set"),
            run_config={"ops": {"training_set": {"config": {"days": 20}}}},
        ).success
        yield local


@pytest.fixture
def registry(platform: LocalPlatform, tmp_path: Path) -> ModelRegistry:
    return platform.use_registry(tmp_path / "mlflow")


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """Production's MLflow: a tracking server on HTTP that stores runs, the registry and the
    artifacts it is sent (proxied to ``served-artifacts``), started as a person starts it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "mlflow-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "served-artifacts")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def healthy() -> bool:
        assert process.poll() is None, f"mlflow server exited:\n{log.read_text()}"
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return response.status == 200

    try:
        wait_for("the MLflow tracking server", 90, healthy)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_chain(
    platform: LocalPlatform,
    selection: AssetSelection = CHAIN,
    training: dict | None = None,
    gate: dict | None = None,
) -> ExecuteInProcessResult:
    ops = {}
    if training:
        ops["candidate_model"] = {"config": training}
    if gate:
        ops["evaluation_report"] = {"config": gate}
    return platform.materialize(selection, run_config={"ops": ops})


def materialized(result: ExecuteInProcessResult, asset: str) -> dict:
    (event,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def built(result: ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def gate_verdict(result: ExecuteInProcessResult) -> tuple[bool, dict]:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == GATE_CHECK]
    return evaluation.passed, {key: value.value for key, value in evaluation.metadata.items()}


def champion(registry: ModelRegistry) -> str | None:
    version = registry.champion()
    return None if version is None else str(version.version)


def promoted(result: ExecuteInProcessResult) -> bool:
    return bool(result.asset_materializations_for_node("production_model"))


def test_retraining_on_the_same_set_and_config_gives_a_byte_identical_model(platform, registry):
    versions = []
    for _ in range(2):
        result = run_chain(platform, AssetSelection.assets("candidate_model"))
        assert result.success
        versions.append(result.output_for_node("candidate_model")["version"])
    first, second = (registry.load_booster(v).model_to_string() for v in versions)
    assert versions == ["1", "2"]
    assert first == second
    # The comparison can tell models apart: another seed gives another model.
    result = run_chain(platform, AssetSelection.assets("candidate_model"), training={"seed": 8})
    other = registry.load_booster(result.output_for_node("candidate_model")["version"])
    assert other.model_to_string() != first


def test_the_run_the_version_and_their_tags_are_in_mlflow(platform, registry):
    result = run_chain(platform, AssetSelection.assets("candidate_model", "evaluation_report"))
    assert result.success
    reference = result.output_for_node("candidate_model")
    client = registry.client()
    run = client.get_run(reference["run_id"])
    training_set = platform.instance.get_latest_materialization_event(AssetKey("training_set"))
    assert training_set is not None and training_set.asset_materialization is not None
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    expected_tags = {
        "flywheel.training_set_version": training_set.asset_materialization.tags[
            "dagster/data_version"
        ],
        "flywheel.feature_service": "fraud_model_v2",
        "flywheel.code_version": "2",
        "mlflow.source.git.commit": commit,
        "flywheel.lock_sha256": hashlib.sha256((PROJECT_ROOT / "uv.lock").read_bytes()).hexdigest(),
        "dagster_run_id": result.run_id,
        "flywheel.dagster_run_url": f"http://127.0.0.1:3000/runs/{result.run_id}",
    }
    assert run.info.status == "FINISHED"
    assert expected_tags.items() <= run.data.tags.items()
    assert run.data.params["lgb.learning_rate"] == str(Hyperparameters().learning_rate)
    assert run.data.params["lgb.deterministic"] == "True"
    assert run.data.params["lgb.num_threads"] == "2"
    assert run.data.params["features"].split(",") == reference["features"]
    assert {"validation_log_loss", "best_iteration", "holdout_pr_auc"} <= run.data.metrics.keys()

    version = client.get_model_version(registry.model_name, reference["version"])
    assert version.run_id == reference["run_id"]
    expected_tags.pop("dagster_run_id")  # set on the run by dagster-mlflow
    assert expected_tags.items() <= version.tags.items()
    assert version.tags["eval.verdict"] == "passed"
    assert float(version.tags["eval.pr_auc"]) > 0

    info = registry.model_info(reference["version"])
    assert info.signature.inputs.input_names() == reference["features"]
    assert info.saved_input_example_info is not None

    logged = {a.path for a in client.list_artifacts(reference["run_id"], "evaluation")}
    assert logged == {
        f"evaluation/{name}"
        for name in (
            "roc.png",
            "precision_recall.png",
            "calibration.png",
            "feature_importance.png",
            "classification_report.html",
        )
    }
    metadata = materialized(result, "candidate_model")
    assert reference["run_id"] in metadata["mlflow_run"]
    assert metadata["model_version"].endswith(f"/versions/{reference['version']}")
    # The report's files link to the copies logged to the run, where MLflow displays them.
    links = materialized(result, "evaluation_report")["reports"]
    assert all(f"({metadata['mlflow_run']}/artifacts/{path})" in links for path in logged)
    folder = Path(result.output_for_node("evaluation_report")["artifacts"][0]).parent
    assert (folder / "classification_report.html").stat().st_size > 10_000


def test_a_model_retrains_from_exactly_the_training_set_its_run_logged(platform, registry):
    result = run_chain(platform, AssetSelection.assets("candidate_model"))
    assert result.success
    reference = result.output_for_node("candidate_model")
    run = registry.client().get_run(reference["run_id"])
    params, tags = run.data.params, run.data.tags
    path = Path(params["training_set.path"])
    assert registry.version(reference["version"]).tags["flywheel.training_set_path"] == str(path)
    assert materialized(result, "candidate_model")["training_set_path"] == str(path)

    # The current training set moves on (another window); the logged one stays as it was.
    def build_training_set(days: int) -> None:
        config = {"ops": {"training_set": {"config": {"days": days}}}}
        assert platform.materialize(
            AssetSelection.assets("training_set"), run_config=config
        ).success

    build_training_set(19)
    try:
        rows = pl.read_parquet(path)
    finally:
        build_training_set(20)  # the module's training set, for the tests after this one
    assert content_hash(rows) == tags["flywheel.training_set_version"]
    when = rows["event_timestamp"].dt.date()
    assert params["training_set.first_day"] == when.min().isoformat()  # type: ignore[union-attr]
    assert params["training_set.last_day"] == when.max().isoformat()  # type: ignore[union-attr]
    assert params["training_set.rows"] == str(rows.height)

    config = Hyperparameters.model_validate_json(params["config"])
    features = params["features"].split(",")
    split = time_split(rows, config.validation_fraction, config.holdout_fraction)
    retrained = train(config, split, features).booster
    original = registry.load_booster(reference["version"])
    matrix = rows.select(features).cast(pl.Float64).to_numpy()
    assert np.array_equal(retrained.predict(matrix), original.predict(matrix))


def test_the_monitoring_reference_is_a_seeded_sample_capped_at_the_configured_rows(
    platform, registry
):
    logged = []
    for _ in range(2):
        result = run_chain(
            platform,
            AssetSelection.assets("candidate_model"),
            training={"monitoring_reference_rows": 10_000},
        )
        assert result.success
        metadata = materialized(result, "candidate_model")
        assert metadata["monitoring_reference_train_rows"] == 10_000 < metadata["train_rows"]
        assert metadata["monitoring_reference_holdout_rows"] == 10_000
        version = registry.version(result.output_for_node("candidate_model")["version"])
        with tempfile.TemporaryDirectory() as folder:
            logged.append(
                json.loads(registry.run_artifact(version, REFERENCE_FILE, folder).read_text())
            )
        params = registry.client().get_run(version.run_id).data.params
        # The holdout (its share of the training set) had more rows than the cap.
        assert int(params["training_set.rows"]) * Hyperparameters().holdout_fraction > 10_000
    assert logged[0]["holdout"]["rows"] == logged[0]["train_rows"] == 10_000
    assert logged[0] == logged[1]  # the same sample for the same seed


def test_the_first_model_must_beat_the_baseline_and_the_floors(platform, registry):
    result = run_chain(platform, gate={"floors": {"pr_auc": 0.9}})
    passed, metadata = gate_verdict(result)
    assert not passed
    assert metadata["reference"] == "baseline"
    assert metadata["failed_rules"] == "pr_auc floor"
    assert not promoted(result)
    assert registry.champion() is None

    result = run_chain(platform)
    passed, metadata = gate_verdict(result)
    assert passed, metadata["gate"]
    assert metadata["reference"] == "baseline"
    rules = {record.data["metric"]: record.data["verdict"] for record in metadata["gate"].records}
    assert rules["pr_auc gain"] == rules["roc_auc floor"] == "pass"
    assert champion(registry) == "2"
    assert materialized(result, "production_model")["previous_champion"] == "none"


def test_a_better_candidate_replaces_the_champion_and_a_rollback_is_one_step(platform, registry):
    weak = run_chain(platform, training=WITHOUT_TRANSACTION_CONTEXT, gate=LOW_FLOORS)
    assert weak.success and champion(registry) == "1"

    result = run_chain(platform)
    passed, metadata = gate_verdict(result)
    assert passed, metadata["gate"]
    assert metadata["reference"] == "champion v1"
    assert champion(registry) == "2"
    assert str(registry.aliased(PREVIOUS_CHAMPION).version) == "1"
    assert materialized(result, "production_model")["previous_champion"] == "1"

    assert registry.rollback() == "1"
    assert champion(registry) == "1"


def test_a_champion_trained_on_later_rows_is_scored_only_on_rows_neither_model_saw(
    platform, registry
):
    # The champion's holdout is the last 10 %: it trained on the start of the candidate's 20 %.
    later = run_chain(platform, training={"holdout_fraction": 0.1}, gate=LOW_FLOORS)
    assert later.success and champion(registry) == "1"
    champion_start = later.output_for_node("candidate_model")["holdout_start"]

    result = run_chain(platform, AssetSelection.assets("candidate_model", "evaluation_report"))
    candidate_start = result.output_for_node("candidate_model")["holdout_start"]
    assert datetime.fromisoformat(candidate_start) < datetime.fromisoformat(champion_start)
    report = materialized(result, "evaluation_report")
    assert report["holdout_start"] == champion_start
    assert report["holdout_unseen_by"] == "the candidate and champion v1"
    rows = pl.read_parquet(Path(platform.data_dir, "lake", "training_set.parquet"))
    unseen = holdout(rows, champion_start)
    assert report["holdout_rows"] == unseen.height < holdout(rows, candidate_start).height
    assert report["holdout_frauds"] == unseen[LABEL].sum()


def test_the_loop_runs_on_an_mlflow_tracking_server(platform, tracking_server, tmp_path):
    """The production setting: a tracking URI alone, the server choosing where artifacts go."""
    registry = ModelRegistry(tracking_uri=tracking_server)
    platform.registry = registry
    result = run_chain(platform)
    assert result.success
    assert champion(registry) == "1"
    reference = result.output_for_node("candidate_model")
    assert registry.load_booster("1").feature_name() == reference["features"]
    assert registry.version("1").tags["eval.verdict"] == "passed"
    # Model and report went through the server to its artifact store, not to a local folder.
    served = tmp_path / "served-artifacts"
    assert any(served.rglob("MLmodel"))
    assert any(served.rglob("classification_report.html"))
    # The asset's links open the server's own UI, and the run is there.
    assert materialized(result, "candidate_model")["mlflow_run"] == (
        f"{tracking_server}/#/experiments/{reference['experiment_id']}/runs/{reference['run_id']}"
    )
    with urllib.request.urlopen(
        f"{tracking_server}/api/2.0/mlflow/runs/get?run_id={reference['run_id']}", timeout=30
    ) as response:
        assert json.load(response)["run"]["info"]["status"] == "FINISHED"


@pytest.mark.parametrize(
    ("worse", "broken"),
    [
        # A missing feature group: the payment against the customer's habits.
        (WITHOUT_TRANSACTION_CONTEXT, {"pr_auc", "roc_auc", "recall_at_precision"}),
        # Three boosting rounds: ranks nearly as well, but far from calibrated.
        ({"max_rounds": 3}, {"pr_auc", "log_loss"}),
        # The same training again: nothing better, so nothing to release.
        ({}, {"pr_auc gain"}),
    ],
    ids=["missing-feature-group", "undertrained", "same-model"],
)
def test_a_worse_candidate_leaves_the_champion_unchanged(platform, registry, worse, broken):
    assert run_chain(platform).success
    assert champion(registry) == "1"

    result = run_chain(platform, training=worse)
    passed, metadata = gate_verdict(result)
    assert not passed
    assert metadata["reference"] == "champion v1"
    failed = set(metadata["failed_rules"].split(", "))
    assert broken <= failed
    if not worse:
        assert failed == broken
    assert not promoted(result)
    assert champion(registry) == "1"
    assert registry.version("2").tags["eval.verdict"] == "blocked"


def test_raising_a_risk_feature_never_lowers_the_fraud_score(platform, registry):
    """Behavioural test on the trained demo model: other features held, one risk raised."""
    result = run_chain(platform, AssetSelection.assets("candidate_model"))
    reference = result.output_for_node("candidate_model")
    booster = registry.load_booster(reference["version"])
    rows = holdout(
        pl.read_parquet(Path(platform.data_dir, "lake", "training_set.parquet")),
        reference["holdout_start"],
    ).sample(300, seed=1)
    grids = {
        "amount_to_customer_mean": np.geomspace(0.05, 50, 25),
        "is_foreign": np.array([0.0, 1.0]),
        "merchant_chargeback_rate": np.linspace(0, 0.2, 21),
    }
    features = booster.feature_name()
    base = rows.select(features).cast(pl.Float64).to_numpy()
    for feature, grid in grids.items():
        column = features.index(feature)
        scores = []
        for value in grid:
            raised = base.copy()
            raised[:, column] = value
            scores.append(booster.predict(raised))
        by_row = np.column_stack(scores)
        assert (np.diff(by_row, axis=1) >= 0).all(), feature
        # And the model did learn the risk: the score moves, on average, with the feature.
        assert (by_row[:, -1] - by_row[:, 0]).mean() > 0, feature


def test_a_new_training_set_retrains_evaluates_and_promotes_by_automation(platform, registry):
    """Declarative automation, tick by tick: what a rebuilt training set sets in motion."""
    chain = {"candidate_model", "evaluation_report", *RELEASE}

    def tick(cursor=None) -> tuple[set[str], object]:
        result = evaluate_automation_conditions(
            defs=platform.defs, instance=platform.instance, asset_selection=CHAIN, cursor=cursor
        )
        keys = {k for k in chain if result.get_num_requested(AssetKey(k))}
        return keys, result.cursor

    def rebuild_training_set_and_run_what_it_plans(cursor) -> tuple[ExecuteInProcessResult, object]:
        """One tick plans the whole chain up to the canary; the gate's blocking check decides in
        the run whether the release steps go ahead."""
        config = {"ops": {"training_set": {"config": {"days": 20}}}}
        result = platform.materialize(AssetSelection.assets("training_set"), run_config=config)
        assert result.success
        requested, cursor = tick(cursor)
        assert requested == {
            "candidate_model",
            "evaluation_report",
            "canary_release",
            "canary_analysis",
        }
        return run_chain(platform, AssetSelection.assets(*requested)), cursor

    requested, cursor = tick()
    assert requested == set()  # nothing new since the training set was built

    result, cursor = rebuild_training_set_and_run_what_it_plans(cursor)
    assert gate_verdict(result)[0]
    assert {"canary_release", "canary_analysis"} <= built(result)
    requested, cursor = tick(cursor)
    assert requested == set()
    # The first model has no champion to be compared with: the analysis says promote, and
    # promotion_sensor (not automation) carries it out.
    sensor_tick = promotion_sensor.evaluate_tick(
        build_sensor_context(
            instance=platform.instance,
            definitions=platform.defs,
            resources={"model_registry": registry},
        )
    )
    (request,) = sensor_tick.run_requests or []
    assert request.asset_selection == [AssetKey("production_model")]
    assert run_chain(platform, AssetSelection.assets("production_model")).success
    assert champion(registry) == "1"

    # Retraining on the same rows gives the same model: the gate blocks it, nothing is promoted.
    result, cursor = rebuild_training_set_and_run_what_it_plans(cursor)
    assert not gate_verdict(result)[0]
    assert not {"canary_release", "canary_analysis"} & built(result)
    assert tick(cursor)[0] == set()
    assert champion(registry) == "1"


def test_a_failed_training_names_the_field_and_closes_its_mlflow_run(platform, registry):
    result = run_chain(
        platform, AssetSelection.assets("candidate_model"), training={"excluded_features": ["x"]}
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "excluded_features: ['x'] are not features of the service" in str(
        failure.step_failure_data.error
    )
    runs = registry.client().search_runs([registry.ensure_experiment()])
    assert [run.info.status for run in runs] == ["FAILED"]
    assert registry.champion() is None
