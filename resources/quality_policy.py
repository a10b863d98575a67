"""The thresholds of the ingestion quality gate, tunable per deployment from the launchpad."""

from dagster import ConfigurableResource
from pydantic import Field


class QualityPolicy(ConfigurableResource):
    """When a batch is fine, worth a warning, or must halt.

    Row-level problems (a null, a value out of range, a repeated id) quarantine the row; the
    batch only halts when the share of such rows passes ``max_bad_row_share``. Batch-level
    problems (schema, volume, distribution past ``drift_halt``) halt it outright.
    """

    max_bad_row_share: float = Field(
        default=0.02, description="Quarantined share of a day above which the whole day halts."
    )
    max_null_rate_increase: float = Field(
        default=0.005,
        description="Per-column null rate above the baseline's by more than this warns.",
    )
    max_duplicate_rate: float = Field(
        default=0.001, description="Share of repeated transaction ids above which the day warns."
    )
    volume_history_days: int = Field(
        default=7, description="Trailing stored days whose median volume a day is compared with."
    )
    min_volume_ratio: float = Field(
        default=0.5, description="A day below this share of the trailing median volume halts."
    )
    max_volume_ratio: float = Field(
        default=3.0, description="A day above this multiple of the trailing median volume halts."
    )
    max_lateness_hours: float = Field(
        default=3.0, description="Hours after the day's end by which the source should deliver it."
    )
    drift_warn: float = Field(
        default=0.1, description="PSI of any column at or above this is recorded as drift (warn)."
    )
    drift_halt: float = Field(
        default=0.25, description="PSI of any column at or above this halts the day."
    )
    drift_report_rows: int = Field(
        default=5_000,
        description=(
            "Rows sampled for the Evidently HTML drift report of a day that warns or halts; 0 "
            "skips the report."
        ),
    )
