"""The Evidently data-drift report that a person opens next to the drift check.

The gate's verdict comes from our own PSI (``quality.distribution_drift``), which is fast enough
for ten million rows; Evidently draws the per-column distributions a person wants to look at
when the gate fires. Evidently is imported here, inside the function, because importing it costs
seconds that ``dagster dev`` would otherwise pay on every code reload.
"""

from pathlib import Path

import polars as pl

from platform_assets.quality import CATEGORICAL_DRIFT_COLUMNS, NUMERIC_DRIFT_COLUMNS


def write_drift_report(
    current: pl.DataFrame, reference: pl.DataFrame, rows: int, path: Path, seed: int = 0
) -> Path:
    """Render Evidently's DataDriftPreset for a sample of ``current`` against ``reference``.

    Args:
        current: The batch being judged.
        reference: Reference rows stored with the accepted baseline.
        rows: Rows sampled from each side (Evidently takes minutes on a full day).
        path: Where the HTML goes.
        seed: Sampling seed, so the same batch gives the same report.

    Returns:
        The path of the written HTML file.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in NUMERIC_DRIFT_COLUMNS if c in current.columns]
    categorical = [c for c in CATEGORICAL_DRIFT_COLUMNS if c in current.columns]
    columns = [c for c in numeric + categorical if c in reference.columns]
    definition = DataDefinition(
        numerical_columns=[c for c in numeric if c in columns],
        categorical_columns=[c for c in categorical if c in columns],
    )

    def sample(frame: pl.DataFrame) -> Dataset:
        picked = frame.select(columns).sample(min(rows, frame.height), seed=seed)
        return Dataset.from_pandas(picked.to_pandas(), data_definition=definition)

    snapshot = Report([DataDriftPreset()]).run(
        current_data=sample(current), reference_data=sample(reference)
    )
    snapshot.save_html(str(path))
    return path
