"""A local Flywheel platform for tests: the code location on a temporary instance and folder."""

import datetime
from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetSelection,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    materialize,
)

from platform_assets.definitions import build_definitions, stage_assets
from resources.clock import Clock
from resources.feature_store import FEATURE_REPO
from resources.label_policy import LabelPolicy
from resources.model_registry import ModelRegistry, model_registry_resources
from resources.monitoring_policy import MonitoringPolicy
from resources.quality_policy import QualityPolicy
from resources.release_policy import ReleasePolicy
from resources.sources.systems import ScenarioConfig, SimulatedSource

# A day's feature rows, as the daily job computes them after the day's ingestion.
DAY_FEATURES = AssetSelection.assets(
    "customer_daily_activity", "customer_features", "merchant_features"
)

# The assets that take a training set to a champion, in the order they materialize.
TO_A_CHAMPION = (
    "training_set",
    "candidate_model",
    "evaluation_report",
    "canary_release",
    "canary_analysis",
    "production_model",
)


class LocalPlatform:
    """The code location's assets and checks on a temporary instance and data folder."""

    def __init__(
        self,
        instance: DagsterInstance,
        data_dir: Path,
        rows_per_day: int = 1_000,
        feature_repo: Path = FEATURE_REPO,
        now: str | None = None,
        label_delay_days: int = 30,
        registry: ModelRegistry | None = None,
        engines: dict | None = None,
    ):
        """``registry`` and ``engines`` (resources by key) replace the embedded defaults: the
        integration tier runs the same platform on PostgreSQL, Redis, Dask and an MLflow server.
        """
        self.instance = instance
        self.data_dir = data_dir
        self.rows_per_day = rows_per_day
        self.feature_repo = feature_repo
        self.label_delay_days = label_delay_days
        self.clock = Clock(frozen_at=now)
        self.monitoring = MonitoringPolicy(drift_report_rows=0)
        # No live traffic unless a test serves it: releases go straight to champion.
        self.release = ReleasePolicy(canary_share=0)
        self.registry = registry or ModelRegistry(
            tracking_uri=f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
            artifact_location=str(data_dir / "mlflow" / "artifacts"),
        )
        self.engines = engines or {}
        self.defs = build_definitions("local", data_dir=data_dir, feature_repo=feature_repo)

    def resources(self, scenarios: Sequence[ScenarioConfig] = (), **policy) -> dict:
        resources = dict(self.defs.resources)
        resources["source"] = SimulatedSource(
            rows_per_day=self.rows_per_day,
            scenarios=list(scenarios),
            max_label_delay_days=self.label_delay_days,
        )
        resources["clock"] = self.clock
        # Labels mature when the simulator's last chargeback for a day has arrived.
        resources["label_policy"] = LabelPolicy(
            maturity_days=self.label_delay_days, merchant_risk_window_days=self.label_delay_days
        )
        resources["quality_policy"] = QualityPolicy(**{"drift_report_rows": 0, **policy})
        resources["monitoring_policy"] = self.monitoring
        resources["release_policy"] = self.release
        resources.update(model_registry_resources(self.registry))
        resources.update(self.engines)
        return resources

    def definitions(self, scenarios: Sequence[ScenarioConfig] = (), **policy) -> Definitions:
        """The whole code location (schedules and sensors too) on this platform's resources."""
        return build_definitions(
            "local",
            data_dir=self.data_dir,
            feature_repo=self.feature_repo,
            resources=self.resources(scenarios, **policy),
        )

    def use_registry(self, folder: Path) -> ModelRegistry:
        """Track and register models in a fresh MLflow store under ``folder`` from now on."""
        self.registry = ModelRegistry(
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            artifact_location=str(folder / "artifacts"),
        )
        return self.registry

    def materialize(
        self,
        selection: AssetSelection,
        partition_key: str | None = None,
        scenarios: Sequence[ScenarioConfig] = (),
        run_config: dict | None = None,
        **policy,
    ) -> ExecuteInProcessResult:
        return materialize(
            stage_assets(self.feature_repo),
            selection=selection,
            partition_key=partition_key,
            resources=self.resources(scenarios, **policy),
            instance=self.instance,
            run_config=run_config,
            raise_on_error=False,
        )

    def ingest(self, day: str, *scenarios: ScenarioConfig, **policy) -> ExecuteInProcessResult:
        """Run the ingestion group for one day, as the daily schedule would."""
        return self.materialize(AssetSelection.groups("ingestion"), day, scenarios, **policy)

    def ingest_with_features(self, days: Sequence[str]) -> None:
        """Ingest each day, then compute its feature rows, as the daily job does."""
        for day in days:
            assert self.ingest(day).success, day
            assert self.materialize(DAY_FEATURES, day).success, day

    def accept_baseline(self, days: Sequence[str], reason: str = "test") -> ExecuteInProcessResult:
        config = {"partitions": list(days), "reason": reason}
        return self.materialize(
            AssetSelection.assets("transaction_baseline"),
            run_config={"ops": {"transaction_baseline": {"config": config}}},
        )


def days(start: str, count: int) -> list[str]:
    first = datetime.date.fromisoformat(start)
    return [(first + datetime.timedelta(days=n)).isoformat() for n in range(count)]


def scenario(kind: str, day: str, intensity: float = 1.0) -> ScenarioConfig:
    return ScenarioConfig(kind=kind, start=day, end=day, intensity=intensity)
