"""Loading the code location leaves MLflow, LightGBM and scikit-learn unimported.

Under ``dagster dev`` every run is a fresh process that imports the whole code location before
it does anything, and these packages cost seconds there; an ingestion run, and most others,
never use them. The stages that do import them inside the functions that call them.
"""

import subprocess
import sys

import pytest
from dagster._config.snap import snap_from_config_type

from resources.model_registry import mlflow_tracking_run

pytestmark = pytest.mark.unit

HEAVY = ("mlflow", "dagster_mlflow", "lightgbm", "sklearn")


def test_loading_the_code_location_imports_no_model_library():
    loaded = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import sys, platform_assets.definitions; "
            f"print(*(name for name in {HEAVY!r} if name in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    assert not loaded, (
        f"importing platform_assets.definitions loads {loaded}: every run process pays for that "
        "import before it starts; import them inside the functions that use them"
    )


def test_the_mlflow_resource_takes_dagster_mlflows_config():
    from dagster_mlflow import mlflow_tracking

    def snapshot(definition):
        return snap_from_config_type(definition.config_schema.config_type)

    assert snapshot(mlflow_tracking_run) == snapshot(mlflow_tracking), (
        "resources/model_registry.py restates dagster-mlflow's config schema "
        "(MLFLOW_TRACKING_CONFIG); bring it in line with the installed dagster-mlflow"
    )
