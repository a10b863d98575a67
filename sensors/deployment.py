"""Automation for releases: analyse a live canary on an interval, promote on its verdict.

``canary_sensor`` requests ``canary_analysis`` every ``ANALYSIS_INTERVAL_SECONDS`` while MLflow's
``canary`` alias names a version, so a rollback comes within one interval of the evidence
crossing its limit (the analysis rolls back itself). ``promotion_sensor`` requests
``production_model`` once per promote verdict, within seconds of it: it only reads the instance
(and the registry when there is a verdict), so it ticks far more often than an analysis costs a
run, and a first model or a canary past its soak is not left waiting for the next analysis.
"""

import json

from dagster import (
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from platform_assets.common.keys import CANARY_ANALYSIS, CANARY_MODE, PRODUCTION_MODEL
from resources.model_registry import PROMOTED_AT_TAG, ModelRegistry

# How often a live canary is analysed; ReleasePolicy's limits decide what the analysis does.
ANALYSIS_INTERVAL_SECONDS = 60
# How soon a promote verdict is carried out.
PROMOTION_INTERVAL_SECONDS = 10


@sensor(
    asset_selection=[CANARY_ANALYSIS],
    minimum_interval_seconds=ANALYSIS_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="While a version is on the 'canary' alias, runs canary_analysis every "
    f"{ANALYSIS_INTERVAL_SECONDS} s, which rolls back a bad canary itself.",
)
def canary_sensor(model_registry: ModelRegistry) -> SensorResult:
    """Analyse the canary if one is live."""
    canary = model_registry.canary()
    if canary is None:
        return SensorResult(skip_reason=SkipReason("No version is on 'canary'."))
    request = RunRequest(
        asset_selection=[CANARY_ANALYSIS], tags={"canary_version": str(canary.version)}
    )
    return SensorResult(run_requests=[request])


@sensor(
    asset_selection=[PRODUCTION_MODEL],
    minimum_interval_seconds=PROMOTION_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests production_model once for each canary_analysis that says promote "
    "while its version is still being released.",
)
def promotion_sensor(
    context: SensorEvaluationContext, model_registry: ModelRegistry
) -> SensorResult:
    """Promote on the newest promote verdict since the last tick that still stands."""
    after = json.loads(context.cursor)["after"] if context.cursor else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=CANARY_ANALYSIS, after_storage_id=after),
        limit=100,
        ascending=True,
    ).records
    cursor = json.dumps({"after": records[-1].storage_id if records else after})
    for record in reversed(records):
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        version = str(metadata["candidate_version"].value)
        if metadata["verdict"].value == "promote" and _still_releasing(
            model_registry, version, str(metadata["mode"].value)
        ):
            request = RunRequest(
                run_key=f"promote-v{version}-{record.storage_id}",
                asset_selection=[PRODUCTION_MODEL],
                tags={"canary_verdict": "promote", "version": version},
            )
            return SensorResult(run_requests=[request], cursor=cursor)
    return SensorResult(cursor=cursor, skip_reason=SkipReason("No new promote verdict."))


def _still_releasing(registry: ModelRegistry, version: str, mode: str) -> bool:
    """Whether a promote verdict on ``version`` still stands.

    It does for a version never promoted that is, in a canary release, still on ``canary``; an
    old verdict seen again (after a cursor reset, or of a version rolled back since) does not.
    """
    if PROMOTED_AT_TAG in registry.version(version).tags:
        return False
    if mode != CANARY_MODE:
        return True
    canary = registry.canary()
    return canary is not None and str(canary.version) == version
