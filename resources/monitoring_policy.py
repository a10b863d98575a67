"""When the champion's monitoring warns and when it acts: every level in one place.

Each check of ``model_monitoring_report`` has a warn level (an alert, a yellow check in the UI)
and an act level (an alert, a red check, and ``retraining_sensor`` asks for a new model). The
defaults say why they are what they are; a team tunes them in the launchpad or in
``resources/environments.py``.
"""

from dagster import ConfigurableResource
from pydantic import Field


class MonitoringPolicy(ConfigurableResource):
    """Warn and act levels of the checks, label coverage, costs and the retraining pace."""

    feature_drift_warn: float = Field(
        default=0.1,
        description="PSI of any model feature against the champion's training rows that warns. "
        "0.1 and 0.25 are the usual PSI bands (minor, major shift), the ingestion gate's too.",
    )
    feature_drift_act: float | None = Field(
        default=None,
        description="PSI of any feature that retrains on its own; empty: feature drift only "
        "warns, and the estimated performance (which says whether the drift hurts the model) "
        "decides. On the simulator, count and volume features pass PSI 0.5 on ordinary days "
        "(merchant_txn_count_7d at 0.71 four days after training) while the estimate holds.",
    )
    prediction_drift_warn: float = Field(
        default=0.1, description="PSI of the day's scores against the champion's holdout scores."
    )
    prediction_drift_act: float = Field(
        default=0.5, description="PSI of the scores that retrains (see feature_drift_act)."
    )
    estimated_performance_warn: float = Field(
        default=0.25,
        description="Relative drop of the estimated PR-AUC below the champion's estimate on its "
        "holdout that warns. Day-to-day noise at 5,000 payments a day stays below 15 %.",
    )
    estimated_performance_act: float = Field(
        default=0.5, description="Relative drop of the estimated PR-AUC that retrains."
    )
    realized_performance_warn: float = Field(
        default=0.25,
        description="Relative drop of the realized PR-AUC below the champion's holdout PR-AUC "
        "that warns.",
    )
    realized_performance_act: float = Field(
        default=0.5,
        description="Relative drop of the realized PR-AUC that retrains: half the precision-"
        "recall area is gone, which day-to-day noise does not reach with min_realized_frauds.",
    )
    min_label_coverage: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of a day's chargebacks that the label-delay history must say have "
        "arrived before its realized performance is computed (earlier, most frauds look legit).",
    )
    min_realized_frauds: int = Field(
        default=20,
        ge=1,
        description="Fewest labelled frauds on a day for a realized verdict; fewer is reported "
        "but not judged (PR-AUC on a handful of frauds is noise).",
    )
    champion_max_age_days: int = Field(
        default=30,
        ge=1,
        description="Retrain at least this often, drift or not: fraud adapts within weeks, and a "
        "month-old model is the oldest a fraud team typically accepts.",
    )
    champion_age_warn_days: int = Field(
        default=25, ge=1, description="Champion age that warns ahead of the forced retraining."
    )
    retraining_cooldown_hours: float = Field(
        default=72.0,
        ge=0,
        description="After a retraining request, further breaches are skipped this long: the "
        "chain trains, gates and promotes within hours, and the new champion needs days of "
        "labels before its own realized performance says anything.",
    )
    min_days_after_change: int = Field(
        default=7,
        ge=0,
        description="A drift's retraining waits until this many days from the first breached "
        "day have complete labels, and trains on them: the new pattern is learned from the days "
        "after the change (a week holds every weekday). 0: retrain at once over "
        "retraining_window_days.",
    )
    retraining_window_days: int = Field(
        default=28,
        ge=1,
        description="Days of labelled payments a retraining for the champion's age (or with "
        "min_days_after_change 0) covers, ending at the newest day whose labels are complete; "
        "training_set's own default.",
    )
    cost_per_missed_fraud: float = Field(
        default=25.0,
        ge=0,
        description="Cost of a missed fraud beyond its amount: the chargeback fee and handling.",
    )
    cost_per_false_alarm: float = Field(
        default=5.0,
        ge=0,
        description="Cost of declining a legitimate payment: the review and the customer's "
        "friction.",
    )
    drift_report_rows: int = Field(
        default=5_000,
        ge=0,
        description="Rows per side sampled into Evidently's drift report; 0 writes none.",
    )
