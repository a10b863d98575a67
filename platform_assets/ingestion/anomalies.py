"""Batch anomaly measures of the ingestion gate: nulls, repeats and volume, free of Dagster."""

import polars as pl


def null_rates(frame: pl.DataFrame) -> dict[str, float]:
    """Share of nulls per column."""
    if frame.is_empty():
        return dict.fromkeys(frame.columns, 0.0)
    counts = frame.null_count().row(0, named=True)
    return {column: count / frame.height for column, count in counts.items()}


def duplicate_rate(frame: pl.DataFrame, key: str = "transaction_id") -> float:
    """Share of rows whose key repeats an earlier row's."""
    if frame.is_empty() or key not in frame.columns:
        return 0.0
    return 1 - frame[key].n_unique() / frame.height


def volume_ratio(rows: int, history: list[int]) -> float | None:
    """A day's rows over the median of the history, or None without history."""
    if not history:
        return None
    ordered = sorted(history)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return rows / median if median else None
