"""Deployment stage: the candidate that passed the gate becomes the champion.

Promotion is moving MLflow's ``champion`` alias; the version it replaces keeps the
``previous_champion`` alias, so a rollback is moving ``champion`` back to it (one call, or one
click in MLflow's UI). A later stage puts the canary release before this one.
"""

from typing import Any

from dagster import AssetExecutionContext, AutomationCondition, MetadataValue, Output, asset

from platform_assets.common.catalog import DEPLOYMENT, catalog
from resources.alerting import Alerter
from resources.clock import Clock
from resources.model_registry import CHAMPION, PREVIOUS_CHAMPION, PROMOTED_AT_TAG, ModelRegistry


@asset(
    kinds={"mlflow"},
    code_version="1",
    io_manager_key="record_io_manager",
    # Promote a new candidate as soon as the gate has passed it, never a blocked one.
    automation_condition=(
        AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
    ),
    **catalog(DEPLOYMENT),
)
def production_model(
    context: AssetExecutionContext,
    candidate_model: dict[str, Any],
    evaluation_report: dict[str, Any],
    model_registry: ModelRegistry,
    clock: Clock,
    alerter: Alerter,
) -> Output[dict[str, Any]]:
    """The champion: the registered fraud model version that serves.

    Runs only after ``candidate_beats_champion`` passed, and refuses a report of another
    version or a blocked one, so nothing but a gated candidate is ever promoted.
    """
    version = candidate_model["version"]
    if evaluation_report["candidate_version"] != version:
        raise ValueError(
            f"the evaluation report is of version {evaluation_report['candidate_version']}, "
            f"not of candidate version {version}: materialize evaluation_report first"
        )
    if not evaluation_report["passed"]:
        failed = [v["check"] for v in evaluation_report["verdicts"] if not v["passed"]]
        raise ValueError(f"candidate version {version} failed the gate ({', '.join(failed)})")
    previous = model_registry.promote(version)
    promoted_at = clock.now().isoformat()
    model_registry.set_version_tags(
        version,
        {PROMOTED_AT_TAG: promoted_at, "flywheel.replaced": previous or "none"},
    )
    alerter.send(
        title=f"{model_registry.model_name} v{version} promoted to {CHAMPION}",
        message=f"passed the gate against {evaluation_report['reference']}; replaces "
        f"{previous or 'no champion'}",
        severity="info",
        asset="production_model",
        version=version,
    )
    rollback = (
        f"set alias '{CHAMPION}' of {model_registry.model_name} to version {previous} "
        f"(alias '{PREVIOUS_CHAMPION}')"
        if previous
        else "none: this is the first champion"
    )
    return Output(
        {
            "model_name": model_registry.model_name,
            "version": version,
            "previous_champion": previous,
            "promoted_at": promoted_at,
        },
        metadata={
            "champion": MetadataValue.url(model_registry.version_url(version)),
            "champion_version": MetadataValue.text(version),
            "previous_champion": MetadataValue.text(previous or "none"),
            "rollback": MetadataValue.text(rollback),
            "gate": MetadataValue.md(
                f"passed against {evaluation_report['reference']} "
                f"({len(evaluation_report['verdicts'])} rules)"
            ),
        },
    )
