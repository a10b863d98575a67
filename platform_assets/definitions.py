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

from platform_assets import (
    baseline,
    candidate_model,
    evaluation,
    feature_store,
    features,
    ingestion,
    ingestion_checks,
    llm_costs,
    llm_evaluation,
    production_model,
    prompts,
    rag_index,
    training_set,
)
from resources.environments import build_resources, current_environment
from resources.feature_store import FEATURE_REPO
from sensors.automation import automation_sensor
from sensors.ingestion import daily_ingestion_schedule, raw_transactions_freshness_sensor
from sensors.llm import prompt_change_sensor, rag_index_freshness_sensor

ASSET_MODULES = (ingestion, baseline, features, candidate_model, evaluation, production_model)
ASSET_MODULES += (prompts, rag_index, llm_evaluation, llm_costs)
CHECK_MODULES = (ingestion_checks, rag_index, evaluation)


def stage_assets(feature_repo: Path = FEATURE_REPO) -> list:
    """The assets and asset checks of every stage, not yet bound to resources.

    Args:
        feature_repo: The Feast repository whose definitions version the feature store assets.
    """
    return [
        *load_assets_from_modules(list(ASSET_MODULES)),
        *feature_store.build_feature_store_assets(feature_repo),
        training_set.build_training_set(feature_repo),
        *load_asset_checks_from_modules(list(CHECK_MODULES)),
    ]


def build_definitions(
    env: str | None = None,
    data_dir: str | Path | None = None,
    feature_repo: Path = FEATURE_REPO,
) -> Definitions:
    """Assemble the code location for ``env`` (default: ``$FLYWHEEL_ENV`` or ``local``).

    Args:
        env: ``local`` (embedded default) or ``prod``.
        data_dir: Local only: where the lake and alerts go (tests pass a temporary folder).
        feature_repo: The Feast repository to apply and version (tests pass a modified copy).
    """
    return Definitions(
        assets=stage_assets(feature_repo),
        schedules=[daily_ingestion_schedule],
        sensors=[
            raw_transactions_freshness_sensor,
            rag_index_freshness_sensor,
            prompt_change_sensor,
            automation_sensor,
        ],
        resources=build_resources(env or current_environment(), data_dir, feature_repo),
        # A subprocess per step costs seconds on a small machine; runs stay in one process.
        executor=in_process_executor,
    )


defs = build_definitions()
