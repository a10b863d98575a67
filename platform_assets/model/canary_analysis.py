"""Deployment stage: is the canary as good as the champion on live traffic?

Run right after a release and then by ``canary_sensor`` on a short interval while the release
lasts. It reads both variants' online predictions from the prediction log, compares them
(``canary.py``) and acts on a rollback at once: the ``canary`` alias is removed (every customer
goes back to the champion), the version is tagged with why, and an alert is sent. A promote
verdict is carried out by ``production_model``, which the sensor then requests.
"""

import datetime
import json
import tempfile
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, AutomationCondition, MetadataValue, Output, asset

from platform_assets.common.catalog import DEPLOYMENT, catalog
from platform_assets.common.keys import CANARY_MODE, DIRECT_MODE, FRAUD_LABELS
from platform_assets.common.markdown import to_markdown
from platform_assets.model.canary import Traffic, as_records, compare, decide
from platform_assets.monitoring.reference import REFERENCE_FILE
from resources.alerting import Alerter
from resources.clock import Clock
from resources.label_policy import LabelPolicy
from resources.lake import Lake
from resources.model_registry import (
    CANARY,
    CANARY_STARTED_TAG,
    CHAMPION,
    OPERATING_PRECISION_TAG,
    ModelRegistry,
)
from resources.prediction_log import ONLINE, PredictionLog
from resources.release_policy import ReleasePolicy

OUTCOME_TAG = "flywheel.canary_outcome"


@asset(
    kinds={"mlflow", "sqlite"},
    code_version="1",
    io_manager_key="record_io_manager",
    # Once after each release; canary_sensor runs it on its interval while the canary lives.
    automation_condition=AutomationCondition.eager(),
    **catalog(DEPLOYMENT),
)
def canary_analysis(
    context: AssetExecutionContext,
    canary_release: dict[str, Any],
    model_registry: ModelRegistry,
    prediction_log: PredictionLog,
    lake: Lake,
    label_policy: LabelPolicy,
    release_policy: ReleasePolicy,
    clock: Clock,
    alerter: Alerter,
) -> Output[dict[str, Any]]:
    """The verdict on the version on ``canary``: continue, roll back (done here) or promote.

    The registry says what is on release: whatever ``canary`` names (``canary_release`` put it
    there, or a person did) is analysed. With no canary, a direct release is promoted at once.
    """
    canary, champion = model_registry.canary(), model_registry.champion()
    if canary is None or champion is None:
        # Judged by the gate alone, against the champion the release recorded.
        released_against = canary_release["champion"]
        if canary_release["mode"] == DIRECT_MODE:
            release = (canary_release["version"], DIRECT_MODE, released_against)
            return _verdict(context, release, "promote", canary_release["reason"], [], {})
        release = (canary_release["version"], CANARY_MODE, released_against)
        return _verdict(context, release, "ended", f"no version is on {CANARY} now", [], {})
    version = str(canary.version)
    now = clock.now()
    # Both variants' answers during this release, as the service stamped them.
    rows = prediction_log.read_versions(ONLINE, [version, str(champion.version)]).filter(
        pl.col("release") == model_registry.release_of(canary)
    )
    canary_rows = rows.filter((pl.col("variant") == CANARY) & (pl.col("model_version") == version))
    champion_rows = rows.filter(
        (pl.col("variant") == CHAMPION) & (pl.col("model_version") == str(champion.version))
    )
    labelled = _matured_labels(pl.concat([canary_rows, champion_rows]), lake, label_policy, now)
    comparisons = compare(
        Traffic(champion_rows, _reference(model_registry, champion), labelled),
        Traffic(canary_rows, _reference(model_registry, canary), labelled),
        float(champion.tags.get(OPERATING_PRECISION_TAG, 0.5)),
        release_policy,
    )
    started = datetime.datetime.fromisoformat(canary.tags[CANARY_STARTED_TAG])
    soak = (now - started).total_seconds() / 3600
    served = canary_rows.filter(pl.col("error").is_null()).height
    verdict, reason = decide(comparisons, soak, served, release_policy)
    if verdict == "rollback":
        _roll_back(model_registry, alerter, version, str(champion.version), reason)
    figures = {"soak_hours": soak, "canary_predictions": served, "now": now.isoformat()}
    release = (version, CANARY_MODE, str(champion.version))
    return _verdict(context, release, verdict, reason, as_records(comparisons), figures)


def _reference(registry: ModelRegistry, version: Any) -> dict[str, Any]:
    """The version's monitoring reference: its holdout's score deciles and its calibration."""
    with tempfile.TemporaryDirectory() as folder:
        return json.loads(registry.run_artifact(version, REFERENCE_FILE, folder).read_text())


def _matured_labels(
    rows: pl.DataFrame, lake: Lake, label_policy: LabelPolicy, now: datetime.datetime
) -> dict[str, int]:
    """Fraud (1) or not (0) for each logged payment whose day's labels have all arrived."""
    last_matured = now.date() - datetime.timedelta(days=label_policy.maturity_days)
    matured = rows.filter(pl.col("day") <= last_matured.isoformat())
    if matured.is_empty():
        return {}
    first = datetime.date.fromisoformat(matured["day"].min())  # type: ignore[arg-type]
    report_days = [
        (first + datetime.timedelta(days=n)).isoformat()
        for n in range((now.date() - first).days + 1)
    ]
    stored = lake.stored_partitions(FRAUD_LABELS, report_days)
    charged: set[str] = set()
    if stored:
        ids = lake.scan_partitions(FRAUD_LABELS, stored).select(pl.col("transaction_id"))
        charged = set(ids.collect().to_series().cast(pl.String))
    return {t: int(t in charged) for t in matured["transaction_id"].unique()}


def _roll_back(
    registry: ModelRegistry, alerter: Alerter, version: str, champion: str, reason: str
) -> None:
    registry.end_canary()
    registry.set_version_tags(version, {OUTCOME_TAG: f"rolled back: {reason}"[:5000]})
    alerter.send(
        title=f"{registry.model_name} v{version} rolled back from {CANARY}",
        message=f"{reason}. Every customer is served by v{champion} again.",
        severity="error",
        asset="canary_analysis",
        version=version,
    )


def _verdict(
    context: AssetExecutionContext,
    release: tuple[str, str, str | None],
    verdict: str,
    reason: str,
    comparisons: list[dict[str, Any]],
    figures: dict[str, Any],
) -> Output[dict[str, Any]]:
    """The record and metadata of a verdict on ``release``.

    ``release`` is the version, its mode and the champion it is judged against (None: there
    was none), which ``production_model`` holds the promotion to.
    """
    version, mode, champion = release
    context.log.info(f"v{version}: {verdict}: {reason}")
    record = {
        "version": version,
        "mode": mode,
        "champion": champion,
        "verdict": verdict,
        "reason": reason,
        "comparisons": comparisons,
        **figures,
    }
    metadata: dict[str, Any] = {
        "candidate_version": MetadataValue.text(version),
        "mode": MetadataValue.text(mode),
        "champion_version": MetadataValue.text(champion or "none"),
        "verdict": MetadataValue.text(verdict),
        "reason": MetadataValue.text(reason),
    }
    if comparisons:
        metadata["comparisons"] = MetadataValue.md(to_markdown(pl.DataFrame(comparisons)))
        metadata["soak_hours"] = MetadataValue.float(round(figures["soak_hours"], 2))
        metadata["canary_predictions"] = MetadataValue.int(figures["canary_predictions"])
    return Output(record, metadata=metadata)
