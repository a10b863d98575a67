"""The code location loads in every environment, without side effects, with a readable catalog."""

import subprocess
import sys

import pytest
from dagster import Definitions

from platform_assets.definitions import build_definitions
from resources.dask_cluster import DaskCluster
from resources.environments import ENV_VARIABLE, ENVIRONMENTS, build_resources

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_definitions_load_in_every_environment(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_SOURCE_URL", f"sqlite:///{tmp_path}/source.db")
    monkeypatch.setenv("FLYWHEEL_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("FLYWHEEL_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("FLYWHEEL_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")

    defs = build_definitions(env, data_dir=tmp_path)

    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("ingestion_job").partitions_def is not None
    assert list(tmp_path.iterdir()) == [], "building definitions must not create files"


def test_unknown_environment_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, "staging")

    with pytest.raises(ValueError, match=ENV_VARIABLE):
        build_definitions()


def test_prod_takes_its_dask_cluster_from_the_environment_checked(monkeypatch):
    monkeypatch.setenv("FLYWHEEL_DASK_SCHEDULER_ADDRESS", "tcp://dask-scheduler:8786")
    monkeypatch.setenv("FLYWHEEL_DASK_FEATURE_SHARDS", "8")
    cluster = build_resources("prod")["dask_cluster"]
    assert (cluster.scheduler_address, cluster.feature_shards) == ("tcp://dask-scheduler:8786", 8)
    assert build_resources("local")["dask_cluster"].engine == "local"
    monkeypatch.setenv("FLYWHEEL_DASK_FEATURE_SHARDS", "eight")
    with pytest.raises(ValueError, match="FLYWHEEL_DASK_FEATURE_SHARDS must be a whole number"):
        build_resources("prod")
    with (
        pytest.raises(ValueError, match="feature_shards is 2 but scheduler_address is empty"),
        DaskCluster(feature_shards=2).feature_cluster(),
    ):
        pass


def test_every_asset_is_catalogued_for_people(tmp_path):
    specs = build_definitions("local", data_dir=tmp_path).resolve_all_asset_specs()

    assert {s.key.to_user_string() for s in specs} >= {
        "raw_transactions",
        "fraud_labels",
        "validated_transactions",
        "quarantined_transactions",
        "transaction_baseline",
        "candidate_model",
        "evaluation_report",
        "canary_release",
        "canary_analysis",
        "production_model",
    }
    for spec in specs:
        assert spec.description, spec.key
        assert spec.group_name != "default", spec.key
        assert spec.owners, spec.key
        assert spec.kinds, spec.key


def test_importing_the_code_location_creates_nothing(tmp_path):
    """`dagster dev` imports the module on every reload; it must not touch the disk."""
    script = "import platform_assets.definitions as d; print(len(d.defs.resolve_all_asset_specs()))"
    env = {"FLYWHEEL_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )

    assert int(out.stdout) >= 5
    assert not (tmp_path / "data").exists()
