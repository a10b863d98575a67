"""Deployment stage: the released candidate that the canary analysis passed becomes the champion.

Promotion is moving MLflow's ``champion`` alias (and ending the canary release); the version it
replaces keeps the ``previous_champion`` alias, so a rollback is moving ``champion`` back to it
(one call, or one click in MLflow's UI). ``promotion_sensor`` requests it when ``canary_analysis``
says promote: after the soak for a canary, at once for a direct release.

A verdict holds against the champion it was reached against: the move is a compare-and-set on
that champion (``ModelRegistry.promote``), refused if another version serves by now, and
promotions run one at a time in the ``promotion`` concurrency pool (one slot, set in the
instance's dagster.yaml: ``concurrency: pools: default_limit: 1``).
"""

from typing import Any

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from platform_assets.common.catalog import DEPLOYMENT, catalog
from platform_assets.common.keys import CANARY_MODE
from resources.alerting import Alerter
from resources.clock import Clock
from resources.model_registry import (
    CANARY,
    CHAMPION,
    PREVIOUS_CHAMPION,
    PROMOTED_AT_TAG,
    ModelRegistry,
)

# Promotions read, then move, two aliases: one at a time, whichever run they are in.
PROMOTION_POOL = "promotion"


@asset(
    kinds={"mlflow"},
    code_version="1",
    io_manager_key="record_io_manager",
    pool=PROMOTION_POOL,
    **catalog(DEPLOYMENT),
)
def production_model(
    context: AssetExecutionContext,
    canary_release: dict[str, Any],
    canary_analysis: dict[str, Any],
    model_registry: ModelRegistry,
    clock: Clock,
    alerter: Alerter,
) -> Output[dict[str, Any]]:
    """The champion: the registered fraud model version that serves.

    Refuses anything but the released version with a promote verdict, a canary that is no
    longer on its alias (rolled back since), and a verdict reached against a champion that no
    longer serves, so only a gated, soaked candidate replaces the version it was judged against.
    """
    version = canary_analysis["version"]
    if canary_analysis["verdict"] != "promote":
        raise ValueError(
            f"canary_analysis says {canary_analysis['verdict']!r} for v{version}, not "
            f"'promote': {canary_analysis['reason']}"
        )
    if canary_analysis["mode"] == CANARY_MODE:
        on_canary = model_registry.canary()
        if on_canary is None or str(on_canary.version) != version:
            raise ValueError(f"v{version} is no longer on {CANARY}: it was rolled back or replaced")
    elif version != canary_release["version"]:
        raise ValueError(f"v{version} is not the released version v{canary_release['version']}")
    judged_against = reference_champion(canary_release, canary_analysis)
    serving = model_registry.champion()
    if serving is not None and str(serving.version) == version:
        raise ValueError(f"v{version} is already the {CHAMPION}: there is nothing to promote")
    # Compare-and-set: refused, naming both versions, if the champion moved since the verdict.
    previous = model_registry.promote(version, expected_champion=judged_against)
    model_registry.end_canary()
    promoted_at = clock.now().isoformat()
    model_registry.set_version_tags(
        version,
        {PROMOTED_AT_TAG: promoted_at, "flywheel.replaced": previous or "none"},
    )
    alerter.send(
        title=f"{model_registry.model_name} v{version} promoted to {CHAMPION}",
        message=f"{canary_analysis['mode']} release: {canary_analysis['reason']}; replaces "
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
            "judged_against": MetadataValue.text(
                f"v{judged_against}" if judged_against else "no champion (the first model)"
            ),
            "rollback": MetadataValue.text(rollback),
            "release": MetadataValue.text(
                f"{canary_analysis['mode']}: {canary_analysis['reason']}"
            ),
        },
    )


def reference_champion(
    canary_release: dict[str, Any], canary_analysis: dict[str, Any]
) -> str | None:
    """The champion the verdict was reached against (None: there was none).

    The gate and the release judged against the champion ``canary_release`` recorded; a canary
    was compared live with the one ``canary_analysis`` recorded (records from before it did are
    read as the release's). Both must be the same version.
    """
    released = canary_release["champion"]
    analysed = canary_analysis.get("champion", released)
    if analysed != released:
        raise ValueError(
            f"v{canary_analysis['version']} was released against champion v{released} but "
            f"analysed against v{analysed}: the champion moved during the release; release it "
            "again against the champion now serving"
        )
    return released
