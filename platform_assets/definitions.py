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

from platform_assets import baseline, ingestion, ingestion_checks
from resources.environments import build_resources, current_environment
from sensors.ingestion import daily_ingestion_schedule, raw_transactions_freshness_sensor

ASSET_MODULES = (ingestion, baseline)
CHECK_MODULES = (ingestion_checks,)


def stage_assets() -> list:
    """The assets and asset checks of every stage, not yet bound to resources."""
    return [
        *load_assets_from_modules(list(ASSET_MODULES)),
        *load_asset_checks_from_modules(list(CHECK_MODULES)),
    ]


def build_definitions(env: str | None = None, data_dir: str | Path | None = None) -> Definitions:
    """Assemble the code location for ``env`` (default: ``$FLYWHEEL_ENV`` or ``local``).

    Args:
        env: ``local`` (embedded default) or ``prod``.
        data_dir: Local only: where the lake and alerts go (tests pass a temporary folder).
    """
    return Definitions(
        assets=stage_assets(),
        schedules=[daily_ingestion_schedule],
        sensors=[raw_transactions_freshness_sensor],
        resources=build_resources(env or current_environment(), data_dir),
        # A subprocess per step costs seconds on a small machine; runs stay in one process.
        executor=in_process_executor,
    )


defs = build_definitions()
