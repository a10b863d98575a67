"""Distribution drift of a batch against the accepted baseline, free of Dagster.

The gate's verdict is our own PSI per column on the baseline's decile bins and category shares,
fast enough for ten million rows. The Evidently report draws the per-column distributions a
person wants to look at when the gate fires; Evidently is imported inside the function, because
importing it costs seconds that ``dagster dev`` would otherwise pay on every code reload.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from platform_assets.ingestion.anomalies import null_rates

NUMERIC_DRIFT_COLUMNS: tuple[str, ...] = ("amount",)
CATEGORICAL_DRIFT_COLUMNS: tuple[str, ...] = ("currency", "merchant_category", "channel", "country")
# Hour of day is derived, not stored; it drifts when the business's rhythm changes.
DERIVED_NUMERIC_COLUMNS: dict[str, pl.Expr] = {
    "event_hour": pl.col("event_timestamp").dt.hour().cast(pl.Float64)
}
_DECILES = [i / 10 for i in range(1, 10)]
# PSI is undefined for empty bins; this floor treats "never seen" as "very rare".
_PSI_FLOOR = 1e-4


def drift_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns drift is measured on, derived columns included, where present."""
    present = [c for c in NUMERIC_DRIFT_COLUMNS + CATEGORICAL_DRIFT_COLUMNS if c in frame.columns]
    derived = [
        expr.alias(name)
        for name, expr in DERIVED_NUMERIC_COLUMNS.items()
        if "event_timestamp" in frame.columns
    ]
    return frame.select(*present, *derived)


def _numeric_columns(frame: pl.DataFrame) -> list[str]:
    names = list(NUMERIC_DRIFT_COLUMNS) + list(DERIVED_NUMERIC_COLUMNS)
    return [c for c in names if c in frame.columns]


def _categorical_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in CATEGORICAL_DRIFT_COLUMNS if c in frame.columns]


def _bin_shares(values: pl.Series, edges: list[float]) -> list[float]:
    """Share of non-null values in each of the ``len(edges) + 1`` bins cut at ``edges``."""
    values = values.drop_nulls()
    if values.is_empty():
        return [0.0] * (len(edges) + 1)
    # On sorted data, search_sorted gives the count of values <= each edge; differences of
    # those counts are the per-bin counts.
    ordered = values.sort()
    cuts = ordered.search_sorted(pl.Series(edges, dtype=values.dtype), side="right").to_list()
    bounds = [0, *cuts, ordered.len()]
    return [(bounds[i + 1] - bounds[i]) / ordered.len() for i in range(len(bounds) - 1)]


def decile_bins(values: pl.Series) -> dict[str, list[float]]:
    """A numeric column's profile: its decile edges and the share of values in each bin."""
    values = values.drop_nulls().cast(pl.Float64)
    edges = sorted(set(values.quantile(q, "linear") for q in _DECILES))  # type: ignore[arg-type]
    return {"edges": edges, "shares": _bin_shares(values, edges)}


def binned_psi(profile: dict[str, list[float]], values: pl.Series) -> float:
    """PSI of ``values`` against a ``decile_bins`` profile, on the profile's bins."""
    return psi(profile["shares"], _bin_shares(values.cast(pl.Float64), profile["edges"]))


def build_profile(frame: pl.DataFrame, partitions: list[str]) -> dict[str, Any]:
    """The baseline profile of accepted days: decile bins, category shares, null rates, volume.

    Args:
        frame: Rows that passed the contract, from the accepted days.
        partitions: The days the rows come from, recorded so the baseline says what it is.
    """
    drift = drift_frame(frame)
    numeric = {column: decile_bins(drift[column]) for column in _numeric_columns(drift)}
    categorical = {}
    for column in _categorical_columns(drift):
        counts = drift[column].drop_nulls().value_counts(normalize=True, name="share")
        categorical[column] = dict(
            zip(counts[column].to_list(), counts["share"].to_list(), strict=True)
        )
    return {
        "partitions": sorted(partitions),
        "rows": frame.height,
        "rows_per_day": frame.height / max(len(partitions), 1),
        "null_rates": null_rates(frame),
        "numeric": numeric,
        "categorical": categorical,
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two share vectors over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, _PSI_FLOOR), max(a, _PSI_FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def distribution_drift(
    frame: pl.DataFrame, profile: dict[str, Any], warn: float, halt: float
) -> pl.DataFrame:
    """PSI per column of a batch against the baseline profile, with a verdict per column.

    Numeric columns are binned on the baseline's deciles; categorical ones compare category
    shares, a category unseen in the baseline counting as a new bin. Columns missing from the
    batch are reported with a null PSI (the contract check owns that failure).

    Returns:
        Columns ``column``, ``kind``, ``psi``, ``verdict`` (ok, warn, halt or missing),
        sorted by PSI, largest first.
    """
    drift = drift_frame(frame)
    rows: list[dict[str, Any]] = []
    for column, spec in profile["numeric"].items():
        value = binned_psi(spec, drift[column]) if column in drift.columns else None
        rows.append({"column": column, "kind": "numeric", "psi": value})
    for column, expected in profile["categorical"].items():
        value = None
        if column in drift.columns:
            counts = drift[column].drop_nulls().value_counts(normalize=True, name="share")
            actual = dict(zip(counts[column].to_list(), counts["share"].to_list(), strict=True))
            categories = sorted(set(expected) | set(actual))
            value = psi(
                [expected.get(c, 0.0) for c in categories], [actual.get(c, 0.0) for c in categories]
            )
        rows.append({"column": column, "kind": "categorical", "psi": value})

    def verdict(value: float | None) -> str:
        if value is None:
            return "missing"
        return "halt" if value >= halt else "warn" if value >= warn else "ok"

    return pl.DataFrame(
        [{**r, "verdict": verdict(r["psi"])} for r in rows],
        schema={"column": pl.String, "kind": pl.String, "psi": pl.Float64, "verdict": pl.String},
    ).sort("psi", descending=True, nulls_last=True)


def write_drift_report(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    rows: int,
    path: Path,
    seed: int = 0,
    numeric_columns: Sequence[str] = NUMERIC_DRIFT_COLUMNS,
    categorical_columns: Sequence[str] = CATEGORICAL_DRIFT_COLUMNS,
) -> Path:
    """Render Evidently's DataDriftPreset for a sample of ``current`` against ``reference``.

    Args:
        current: The batch being judged.
        reference: Reference rows (the accepted baseline's, or a model's training rows).
        rows: Rows sampled from each side (Evidently takes minutes on a full day).
        path: Where the HTML goes.
        seed: Sampling seed, so the same batch gives the same report.
        numeric_columns: Numeric columns to compare (the batch's drift columns by default).
        categorical_columns: Categorical columns to compare.

    Returns:
        The path of the written HTML file.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in numeric_columns if c in current.columns]
    categorical = [c for c in categorical_columns if c in current.columns]
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
