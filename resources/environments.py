"""The resources of each environment, built on demand: nothing is read or created at import.

``local`` is the embedded default: the declared dataset's source (``$FLYWHEEL_DATASET``, by
default the simulator; ``resources/sources/dataset.py``), the lake, alerts file and MLflow
store (SQLite and an artifact folder) under the project's ``.flywheel/`` folder, no external
service; with ``FLYWHEEL_SCENARIO`` (``make demo``) its clock, simulated world and policies are
the scenario's (``resources/scenario.py``). ``prod`` takes the same code to real
systems through environment variables (``dagster.EnvVar``, resolved when a run starts):

- ``FLYWHEEL_SOURCE_URL``: SQLAlchemy URL of the source database (its columns and labels are
  read as the dataset declaration says);
- ``FLYWHEEL_LAKE_ROOT``: the lake directory (a mounted volume);
- ``FLYWHEEL_ALERT_WEBHOOK_URL``: Slack-compatible webhook for alerts;
- ``FLYWHEEL_FEAST_REGISTRY_URL``, ``FLYWHEEL_REDIS_CONNECTION``: Feast's SQL registry and
  Redis online store (``feature_repo/feature_store.prod.yaml``);
- ``FLYWHEEL_MLFLOW_TRACKING_URI``: the MLflow tracking server and model registry;
- ``FLYWHEEL_PREDICTION_LOG_URL``: PostgreSQL URL of the prediction log;
- ``FLYWHEEL_DASK_SCHEDULER_ADDRESS`` (optional): the Dask cluster models train on
  (``resources/dask_cluster.py``); unset, they train in the run's own process.
  ``FLYWHEEL_DASK_FEATURE_SHARDS`` (optional, default 0): shards of customers a day of customer
  features is computed in on that cluster.
"""

import os
from pathlib import Path
from typing import Any

from dagster import EnvVar

from resources.alerting import LocalAlerter, WebhookAlerter
from resources.clock import Clock
from resources.dask_cluster import DaskCluster
from resources.feature_store import FEATURE_REPO, FeatureStoreResource
from resources.label_policy import LabelPolicy
from resources.lake import Lake, LakeIOManager, RecordIOManager
from resources.llm.environments import llm_resources
from resources.model_registry import ModelRegistry, model_registry_resources
from resources.monitoring_policy import MonitoringPolicy
from resources.prediction_log import PredictionLog
from resources.quality_policy import QualityPolicy
from resources.release_policy import ReleasePolicy
from resources.scenario import playing_scenario
from resources.sources.dataset import declared_dataset
from resources.sources.systems import SqlSource, declared_source

ENVIRONMENTS = ("local", "prod")
ENV_VARIABLE = "FLYWHEEL_ENV"
DATA_DIR_VARIABLE = "FLYWHEEL_DATA_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def current_environment() -> str:
    """The environment named by ``FLYWHEEL_ENV`` (default ``local``), checked."""
    env = os.environ.get(ENV_VARIABLE, "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"{ENV_VARIABLE} must be one of {ENVIRONMENTS}, got {env!r}")
    return env


def local_data_dir(data_dir: str | Path | None = None) -> Path:
    """The local data folder: ``data_dir``, else ``$FLYWHEEL_DATA_DIR``, else ``.flywheel/data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_VARIABLE) or PROJECT_ROOT / ".flywheel/data")


def _whole_number(variable: str, default: int) -> int:
    """An optional environment variable holding a whole number, checked."""
    value = os.environ.get(variable, str(default))
    if not value.isdigit():
        raise ValueError(f"{variable} must be a whole number, got {value!r}")
    return int(value)


def _policies() -> dict[str, Any]:
    """The clock and the policies, the same in every environment (tuned in the launchpad).

    When labels can be trusted is the declared dataset's.
    """
    labels = declared_dataset().labels
    return {
        "clock": Clock(),
        "quality_policy": QualityPolicy(),
        "label_policy": LabelPolicy(
            maturity_days=labels.maturity_days, label_delay_days=labels.delay_days
        ),
        "monitoring_policy": MonitoringPolicy(),
        "release_policy": ReleasePolicy(),
    }


def build_resources(
    env: str, data_dir: str | Path | None = None, feature_repo: Path = FEATURE_REPO
) -> dict[str, Any]:
    """The resource dictionary for ``env``.

    Args:
        env: ``local`` or ``prod``.
        data_dir: Local only: where the lake and alerts go. Defaults to ``$FLYWHEEL_DATA_DIR``
            or ``<project>/.flywheel/data``; tests pass a temporary directory.
        feature_repo: The Feast repository (``feature_repo/``; tests pass a modified copy).
    """
    if env == "local":
        root = local_data_dir(data_dir)
        lake = Lake(root=str(root / "lake"))
        return {
            "source": declared_source(declared_dataset().source),
            "lake": lake,
            "io_manager": LakeIOManager(lake=lake),
            "record_io_manager": RecordIOManager(lake=lake),
            "alerter": LocalAlerter(alerts_file=str(root / "alerts.jsonl")),
            **_policies(),
            "prediction_log": PredictionLog(url=f"sqlite:///{root / 'predictions.db'}"),
            "dask_cluster": DaskCluster(),
            "feature_store": FeatureStoreResource(
                repo_path=str(feature_repo),
                lake_root=str(root / "lake"),
                state_dir=str(root / "feast"),
            ),
            **model_registry_resources(
                ModelRegistry(
                    tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                    artifact_location=str(root / "mlflow" / "artifacts"),
                )
            ),
            **llm_resources(env, root, PROJECT_ROOT),
            # make demo: the scenario's clock, simulated world and policies replace the defaults.
            **playing_scenario(root),
        }
    if env == "prod":
        lake = Lake(root=EnvVar("FLYWHEEL_LAKE_ROOT"))
        return {
            # When a day was delivered, from the source (optional, see SqlSource): read when the
            # code location loads, as an unset EnvVar would be an error rather than None.
            "source": SqlSource(
                url=EnvVar("FLYWHEEL_SOURCE_URL"),
                completeness_table=os.environ.get("FLYWHEEL_SOURCE_COMPLETENESS_TABLE"),
                loaded_at_column=os.environ.get("FLYWHEEL_SOURCE_LOADED_AT_COLUMN"),
            ),
            "lake": lake,
            "io_manager": LakeIOManager(lake=lake),
            "record_io_manager": RecordIOManager(lake=lake),
            "alerter": WebhookAlerter(webhook_url=EnvVar("FLYWHEEL_ALERT_WEBHOOK_URL")),
            **_policies(),
            "prediction_log": PredictionLog(url=EnvVar("FLYWHEEL_PREDICTION_LOG_URL")),
            # Optional, read at load like the source's: unset, all of it runs in the run's process.
            "dask_cluster": DaskCluster(
                scheduler_address=os.environ.get("FLYWHEEL_DASK_SCHEDULER_ADDRESS", ""),
                feature_shards=_whole_number("FLYWHEEL_DASK_FEATURE_SHARDS", default=0),
            ),
            "feature_store": FeatureStoreResource(
                repo_path=str(feature_repo),
                config_file="feature_store.prod.yaml",
                lake_root=EnvVar("FLYWHEEL_LAKE_ROOT"),
            ),
            **model_registry_resources(
                ModelRegistry(tracking_uri=EnvVar("FLYWHEEL_MLFLOW_TRACKING_URI"))
            ),
            **llm_resources(env, None, PROJECT_ROOT),
        }
    raise ValueError(f"env must be one of {ENVIRONMENTS}, got {env!r}")
