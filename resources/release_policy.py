"""How a gated candidate reaches live traffic: the canary's share, its soak, and what rolls it back.

``canary_release`` starts a release with ``canary_share``; ``canary_analysis`` compares canary and
champion on their own live traffic in the prediction log against the limits below, each only
once its minimum sample is in; ``production_model`` promotes after ``soak_hours`` of it. Time is
the clock resource's, so tests and demos compress the soak by moving the clock.
"""

from dagster import ConfigurableResource
from pydantic import Field


class ReleasePolicy(ConfigurableResource):
    """Canary share and soak, rollback limits and minimum samples.

    ``canary_sensor`` analyses a live canary every ``ANALYSIS_INTERVAL_SECONDS`` (60 s).
    """

    canary_share: float = Field(
        default=0.05,
        ge=0,
        le=0.10,
        description="Share of customers the canary serves (sticky by customer). 0 releases "
        "without a canary: the gate's verdict alone promotes (when nothing serves live traffic).",
    )
    soak_hours: float = Field(
        default=24, ge=24, le=48, description="Stable canary hours needed before promotion."
    )
    min_canary_predictions: int = Field(
        default=1_000, ge=1, description="Canary predictions needed before promotion."
    )
    min_sample: int = Field(
        default=200,
        ge=100,
        description="Predictions each variant needs before error rate, latency, score shift or "
        "the estimated PR-AUC is judged. At least 100: the score shift is a PSI over ten score "
        "bins, and on fewer predictions a bin is left empty often enough (37 % of samples of 30) "
        "to read as a drift of 0.7 on its own.",
    )
    max_error_rate_increase: float = Field(
        default=0.01, ge=0, description="Canary error rate above the champion's that rolls back."
    )
    max_p99_latency_ratio: float = Field(
        default=2.0, gt=1, description="Canary p99 latency over the champion's that rolls back."
    )
    latency_slack_ms: float = Field(
        default=2.0,
        ge=0,
        description="Milliseconds the canary's p99 may exceed the champion's whatever the ratio: "
        "at a millisecond a few hundred microseconds of jitter doubles a p99.",
    )
    max_score_psi: float = Field(
        default=0.25,
        ge=0,
        description="How much more the canary's live scores may drift from its own holdout's "
        "(PSI) than the champion's from its holdout's: both see a random sample of the same "
        "customers, so a healthy canary drifts about as much as the champion does, more if it "
        "leans more on a feature served with skew (README: Known skew). An inverted model "
        "drifts by about 8.",
    )
    max_estimated_pr_auc_drop: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="How much less of its holdout's estimated PR-AUC the canary may keep on "
        "live traffic than the champion keeps of its own (relative) before it rolls back.",
    )
    max_realized_pr_auc_drop: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Relative drop of the canary's realized PR-AUC (matured labels) below the "
        "champion's that rolls back.",
    )
    max_recall_drop: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Relative drop of recall at the operating precision that rolls back.",
    )
    min_labelled_frauds: int = Field(
        default=20, ge=1, description="Labelled frauds each variant needs before realized metrics."
    )
