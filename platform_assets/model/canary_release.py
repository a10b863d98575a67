"""Deployment stage: a gated candidate starts on a small, sticky share of live traffic.

Starting a release is pointing MLflow's ``canary`` alias at the candidate, tagged with its share
and start time; every prediction service following the registry routes that share of customers
to it. The first model has no champion to compare with, and a policy share of 0 means no live
traffic is watched: both release directly, and ``canary_analysis`` says so.
"""

from typing import Any

from dagster import AssetExecutionContext, AutomationCondition, MetadataValue, Output, asset

from platform_assets.common.catalog import DEPLOYMENT, catalog
from platform_assets.common.keys import CANARY_MODE, DIRECT_MODE
from resources.alerting import Alerter
from resources.clock import Clock
from resources.model_registry import CANARY, ModelRegistry
from resources.release_policy import ReleasePolicy


@asset(
    kinds={"mlflow"},
    code_version="1",
    io_manager_key="record_io_manager",
    # Release a new candidate as soon as the gate has passed it, never a blocked one.
    automation_condition=(
        AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
    ),
    **catalog(DEPLOYMENT),
)
def canary_release(
    context: AssetExecutionContext,
    candidate_model: dict[str, Any],
    evaluation_report: dict[str, Any],
    model_registry: ModelRegistry,
    release_policy: ReleasePolicy,
    clock: Clock,
    alerter: Alerter,
) -> Output[dict[str, Any]]:
    """The release of the gated candidate: on ``canary`` with its share, or direct.

    Refuses a report of another version or a blocked one, so nothing but a gated candidate
    ever reaches traffic.
    """
    version = gated_version(candidate_model, evaluation_report)
    champion = model_registry.champion()
    started_at = clock.now()
    share = release_policy.canary_share
    if champion is None or share == 0:
        mode, reason = (
            DIRECT_MODE,
            (
                "no champion yet: the first model is released directly"
                if champion is None
                else "canary_share is 0: released on the gate's verdict alone"
            ),
        )
    else:
        mode = CANARY_MODE
        model_registry.start_canary(version, share, started_at)
        reason = f"{share:.0%} of customers go to v{version}, the rest to v{champion.version}"
        alerter.send(
            title=f"{model_registry.model_name} v{version} on {CANARY} release",
            message=f"{reason}; promotion after {release_policy.soak_hours:g} h of stable "
            "metrics, rollback on the first comparison past its limit",
            severity="info",
            asset="canary_release",
            version=version,
        )
    context.log.info(f"v{version}: {mode} release; {reason}")
    record = {
        "version": version,
        "mode": mode,
        "share": share if mode == CANARY_MODE else 0.0,
        "champion": None if champion is None else str(champion.version),
        "started_at": started_at.isoformat(),
        "reason": reason,
    }
    return Output(
        record,
        metadata={
            "candidate": MetadataValue.url(model_registry.version_url(version)),
            "candidate_version": MetadataValue.text(version),
            "mode": MetadataValue.text(mode),
            "canary_share": MetadataValue.float(record["share"]),
            "champion_version": MetadataValue.text(record["champion"] or "none"),
            "reason": MetadataValue.text(reason),
        },
    )


def gated_version(candidate_model: dict[str, Any], evaluation_report: dict[str, Any]) -> str:
    """The candidate's version, once its own evaluation report says it passed the gate."""
    version = candidate_model["version"]
    if evaluation_report["candidate_version"] != version:
        raise ValueError(
            f"the evaluation report is of version {evaluation_report['candidate_version']}, "
            f"not of candidate version {version}: materialize evaluation_report first"
        )
    if not evaluation_report["passed"]:
        failed = [v["check"] for v in evaluation_report["verdicts"] if not v["passed"]]
        raise ValueError(f"candidate version {version} failed the gate ({', '.join(failed)})")
    return version
