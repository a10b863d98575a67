"""The Flywheel code location: every stage's assets, checks, jobs and sensors in one place.

Stage modules are listed explicitly (no package scan), and resources are built for the
environment named by ``FLYWHEEL_ENV`` only when ``build_definitions`` runs.
"""

from pathlib import Path

from dagster import (
    Definitions,
    in_process_executor,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from platform_assets.features import feature_tables, online_features, training_set
from platform_assets.ingestion import (
    delivery_checks,
    raw_transactions,
    transaction_baseline,
    validated_transactions,
)
from platform_assets.llm import (
    llm_cost_report,
    llm_eval_report,
    prompt_registry,
    prompt_release,
    rag_index,
)
from platform_assets.model import (
    canary_analysis,
    canary_release,
    candidate_model,
    evaluation_report,
    production_model,
)
from platform_assets.monitoring import champion_scores, model_monitoring_report
from resources.environments import build_resources, current_environment
from resources.feature_store import FEATURE_REPO
from sensors.automation import automation_sensor
from sensors.bootstrap import bootstrap_sensor
from sensors.deployment import canary_sensor, promotion_sensor
from sensors.ingestion import ingestion_sensor, raw_transactions_freshness_sensor
from sensors.llm import prompt_change_sensor, rag_index_freshness_sensor
from sensors.monitoring import monitoring_freshness_sensor, retraining_sensor

# Every wiring module, stage by stage in the order of the loop. The feature store's assets and
# the training set are built for a Feast repository instead (see stage_assets).
ASSET_MODULES = (raw_transactions, validated_transactions, transaction_baseline, feature_tables)
ASSET_MODULES += (candidate_model, evaluation_report, canary_release, canary_analysis)
ASSET_MODULES += (production_model,)
ASSET_MODULES += (champion_scores, model_monitoring_report)
ASSET_MODULES += (prompt_registry, rag_index, llm_eval_report, prompt_release, llm_cost_report)
CHECK_MODULES = (delivery_checks, rag_index, evaluation_report)


def stage_assets(feature_repo: Path = FEATURE_REPO) -> list:
    """The assets and asset checks of every stage, not yet bound to resources.

    Args:
        feature_repo: The Feast repository whose definitions version the feature store assets.
    """
    return [
        *load_assets_from_modules(list(ASSET_MODULES)),
        *online_features.build_feature_store_assets(feature_repo),
        training_set.build_training_set(feature_repo),
        *load_asset_checks_from_modules(list(CHECK_MODULES)),
    ]


def build_definitions(
    env: str | None = None,
    data_dir: str | Path | None = None,
    feature_repo: Path = FEATURE_REPO,
    resources: dict | None = None,
) -> Definitions:
    """Assemble the code location for ``env`` (default: ``$FLYWHEEL_ENV`` or ``local``).

    Args:
        env: ``local`` (embedded default) or ``prod``.
        data_dir: Local only: where the lake and alerts go (tests pass a temporary folder).
        feature_repo: The Feast repository to apply and version (tests pass a modified copy).
        resources: Resources instead of the environment's (scenario tests set the clock and
            the simulated world).
    """
    return Definitions(
        assets=stage_assets(feature_repo),
        sensors=[
            ingestion_sensor,
            raw_transactions_freshness_sensor,
            bootstrap_sensor,
            rag_index_freshness_sensor,
            prompt_change_sensor,
            retraining_sensor,
            monitoring_freshness_sensor,
            canary_sensor,
            promotion_sensor,
            automation_sensor,
        ],
        resources=resources
        or build_resources(env or current_environment(), data_dir, feature_repo),
        # A subprocess per step costs seconds on a small machine; runs stay in one process.
        executor=in_process_executor,
    )


defs = build_definitions()
