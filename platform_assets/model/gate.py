"""The promotion rules of the champion/challenger gate, free of Dagster.

The gate compares the candidate with a reference (the champion, or for the first model a naive
baseline that predicts the training fraud rate for everyone) rule by rule, so a person reads
exactly which rule held. Both were scored by ``suite.py`` on rows neither model trained on.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from platform_assets.model.suite import METRICS, Metric, ModelEvaluation

# The critical rules by default, as plain dicts: Dagster's launchpad default must be config.
DEFAULT_CRITICAL_RULES = [
    {"metric": "pr_auc", "must": "not_drop", "tolerance": 0.0},
    {"metric": "roc_auc", "must": "not_drop", "tolerance": 0.0},
    {"metric": "log_loss", "must": "not_rise", "tolerance": 0.0},
    {"metric": "recall_at_precision", "must": "not_drop", "tolerance": 0.0},
]


class MetricRule(BaseModel):
    """One critical metric and how the candidate may move it relative to the reference."""

    metric: Metric = Field(description="Which metric of the suite the rule is about.")
    must: Literal["not_drop", "not_rise"] = Field(
        description="not_drop: higher is better; not_rise: lower is better."
    )
    tolerance: float = Field(default=0.0, ge=0, description="Allowed move the wrong way.")


class GateRules(BaseModel):
    """What a candidate must show on the holdout to replace the champion, beyond the critical rules.

    ``evaluation_report``'s launchpad config (``EvaluationConfig``) is this model as Dagster
    config, with the critical rules (``MetricRule``) as a list next to it.
    """

    primary_metric: Metric = Field(
        default="pr_auc", description="The metric a candidate must improve to be worth a release."
    )
    min_primary_improvement: float = Field(
        default=0.002,
        ge=0,
        description="Least gain on the primary metric; a retrain that changes nothing stays out.",
    )
    slice_tolerance: float = Field(
        default=0.02, ge=0, description="Most any slice's PR-AUC may drop against the reference."
    )
    min_slice_frauds: int = Field(
        default=30,
        ge=1,
        description="Slices with fewer frauds in the holdout are reported, not gated (too noisy).",
    )
    operating_precision: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="Precision the fraud team works at: recall_at_precision is the share of "
        "frauds caught while at least this share of alerts are fraud.",
    )
    floors: dict[str, float] = Field(
        default={"pr_auc": 0.04, "roc_auc": 0.75},
        description="Absolute minimums (higher-is-better metrics) every candidate must reach, "
        "with or without a champion. Defaults fit the simulated payments (fraud rate ~0.9 %).",
    )

    @field_validator("floors")
    @classmethod
    def _floors_name_metrics(cls, floors: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(floors) - set(METRICS))
        if unknown:
            raise ValueError(f"floors: {unknown} are not metrics of the suite {list(METRICS)}")
        return floors


@dataclass(frozen=True)
class Verdict:
    """One row of the gate's table."""

    check: str
    reference: float | None
    candidate: float
    rule: str
    passed: bool


def relative_rule(comparison: str, sign: str, margin: float) -> str:
    """A rule against the reference as a person reads it: "≥ reference − 0.02", "≤ reference"."""
    return f"{comparison} reference" + (f" {sign} {margin:g}" if margin else "")


def gate(
    candidate: ModelEvaluation,
    reference: ModelEvaluation,
    slice_frauds: dict[str, int],
    config: GateRules,
    critical: Sequence[MetricRule],
) -> list[Verdict]:
    """Every rule of the gate, held or broken; the candidate passes only if all hold.

    Args:
        candidate: The candidate's results.
        reference: The champion's (or the naive baseline's) results on the same rows.
        slice_frauds: Frauds per slice in the holdout, to skip slices too small to judge.
        config: The gain, slice and floor rules.
        critical: The critical metrics and how each may move.
    """
    verdicts = []
    for rule in critical:
        new, old = candidate.metrics[rule.metric], reference.metrics[rule.metric]
        if rule.must == "not_drop":
            passed, text = new >= old - rule.tolerance, relative_rule("≥", "−", rule.tolerance)
        else:
            passed, text = new <= old + rule.tolerance, relative_rule("≤", "+", rule.tolerance)
        verdicts.append(Verdict(rule.metric, old, new, text, passed))
    primary = config.primary_metric
    verdicts.append(
        Verdict(
            f"{primary} gain",
            reference.metrics[primary],
            candidate.metrics[primary],
            relative_rule("≥", "+", config.min_primary_improvement),
            candidate.metrics[primary]
            >= reference.metrics[primary] + config.min_primary_improvement,
        )
    )
    for metric, floor in config.floors.items():
        value = candidate.metrics[metric]
        verdicts.append(Verdict(f"{metric} floor", None, value, f"≥ {floor:g}", value >= floor))
    for name, frauds in slice_frauds.items():
        new, old = candidate.slices.get(name), reference.slices.get(name)
        if frauds < config.min_slice_frauds or new is None or old is None:
            continue
        verdicts.append(
            Verdict(
                f"pr_auc [{name}]",
                old,
                new,
                relative_rule("≥", "−", config.slice_tolerance),
                new >= old - config.slice_tolerance,
            )
        )
    return verdicts


def as_records(verdicts: list[Verdict]) -> list[dict]:
    """Verdicts as plain dicts (for the stored report)."""
    return [asdict(v) for v in verdicts]


def evaluation_start(
    candidate_start: str, champion_version: str | None, champion_start: str | None
) -> tuple[str, str]:
    """Where the rows neither model saw begin, and who they are unseen by.

    A champion trained on a later window than the candidate's has seen the start of the
    candidate's holdout; scored there, it would look better than it is and block fair
    candidates. So the evaluation starts at the later of the two holdout starts. A champion
    without a recorded start is scored on the candidate's holdout.
    """
    if champion_version is None or champion_start is None:
        return candidate_start, "the candidate"
    unseen_by = f"the candidate and champion v{champion_version}"
    if datetime.fromisoformat(champion_start) > datetime.fromisoformat(candidate_start):
        return champion_start, unseen_by
    return candidate_start, unseen_by
