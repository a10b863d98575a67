"""The monitoring checks' verdicts: ok, warn, act or pending, per check, free of Dagster.

Each verdict names the metric that decided it, its value and the level it was held to, so an
alert, a check in the UI and a retraining run's tags all say the same thing.
"""

from dataclasses import asdict, dataclass
from typing import Any, Literal

from platform_assets.common.keys import (
    CHAMPION_AGE,
    ESTIMATED_PERFORMANCE,
    FEATURE_DRIFT,
    PREDICTION_DRIFT,
    REALIZED_PERFORMANCE,
)
from resources.monitoring_policy import MonitoringPolicy

CHECKS = (
    FEATURE_DRIFT,
    PREDICTION_DRIFT,
    ESTIMATED_PERFORMANCE,
    REALIZED_PERFORMANCE,
    CHAMPION_AGE,
)
Level = Literal["ok", "warn", "act", "pending"]


@dataclass(frozen=True)
class Verdict:
    """One check on one day: the deciding metric, its value, the level it reached and why."""

    check: str
    metric: str
    value: float | None
    threshold: float | None  # the bound that was crossed, else the warn bound
    level: Level
    reason: str


def _above(
    check: str, metric: str, value: float, warn: float, act: float | None, unit: str
) -> Verdict:
    """A verdict for a figure that must stay below its levels (drift, age); no act level: warn."""
    if act is not None and value >= act:
        return Verdict(check, metric, value, act, "act", f"{value:.4g} ≥ act level {act:g}{unit}")
    if value >= warn:
        return Verdict(
            check, metric, value, warn, "warn", f"{value:.4g} ≥ warn level {warn:g}{unit}"
        )
    return Verdict(check, metric, value, warn, "ok", f"{value:.4g} < warn level {warn:g}{unit}")


def _drop(
    check: str, metric: str, value: float, reference: float, warn: float, act: float
) -> Verdict:
    """A verdict for a performance figure that must not fall a share below its reference."""
    act_floor, warn_floor = reference * (1 - act), reference * (1 - warn)
    drop = 1 - value / reference if reference else 0.0
    says = f"{value:.4g} is {drop:+.0%} below the reference {reference:.4g}"
    if value <= act_floor:
        return Verdict(check, metric, value, act_floor, "act", f"{says} (act at {act:.0%})")
    if value <= warn_floor:
        return Verdict(check, metric, value, warn_floor, "warn", f"{says} (warn at {warn:.0%})")
    return Verdict(check, metric, value, warn_floor, "ok", f"{says} (warn at {warn:.0%})")


def judge(
    report: dict[str, Any], holdout: dict[str, float], policy: MonitoringPolicy
) -> list[Verdict]:
    """Every check's verdict on a day's report.

    Args:
        report: The day's figures (``feature_psi``, ``prediction_psi``, ``estimated``,
            ``realized`` or None, ``realized_frauds``, ``label_coverage``,
            ``champion_age_days``).
        holdout: The champion's reference figures on its holdout (``pr_auc``,
            ``estimated_pr_auc``).
        policy: The warn and act levels.
    """
    feature, psi = max(report["feature_psi"].items(), key=lambda item: item[1])
    p = policy
    return [
        _above(FEATURE_DRIFT, f"psi:{feature}", psi, p.feature_drift_warn, p.feature_drift_act, ""),
        _above(PREDICTION_DRIFT, "psi:score", report["prediction_psi"], p.prediction_drift_warn,
               p.prediction_drift_act, ""),
        _drop(ESTIMATED_PERFORMANCE, "estimated_pr_auc", report["estimated"]["estimated_pr_auc"],
              holdout["estimated_pr_auc"], p.estimated_performance_warn,
              p.estimated_performance_act),
        _realized(report, holdout, p),
        _above(CHAMPION_AGE, "champion_age_days", report["champion_age_days"],
               p.champion_age_warn_days, p.champion_max_age_days, " days"),
    ]  # fmt: skip


def _realized(report: dict[str, Any], holdout: dict[str, float], p: MonitoringPolicy) -> Verdict:
    """The realized check: pending until enough labels have arrived, then the PR-AUC's drop."""
    metric, realized = "realized_pr_auc", report["realized"]
    if realized is None:
        coverage = report["label_coverage"]
        return Verdict(REALIZED_PERFORMANCE, metric, None, None, "pending",
                       f"labels cover {coverage:.0%} of what history expects by now; judged at "
                       f"{p.min_label_coverage:.0%}")  # fmt: skip
    if report["realized_frauds"] < p.min_realized_frauds:
        return Verdict(REALIZED_PERFORMANCE, metric, realized[metric], None, "pending",
                       f"{report['realized_frauds']} labelled frauds; judged from "
                       f"{p.min_realized_frauds}")  # fmt: skip
    return _drop(REALIZED_PERFORMANCE, metric, realized[metric], holdout["pr_auc"],
                 p.realized_performance_warn, p.realized_performance_act)  # fmt: skip


def as_records(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Verdicts as JSON-ready dicts (metadata, records, run tags)."""
    return [asdict(v) for v in verdicts]
