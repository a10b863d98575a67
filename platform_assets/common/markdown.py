"""Small frames as markdown tables, the way Dagster's metadata shows them to a person."""

import polars as pl


def to_markdown(frame: pl.DataFrame, limit: int = 20) -> str:
    """A small frame as a markdown table for Dagster metadata (truncated to ``limit`` rows)."""
    if frame.is_empty():
        return "_none_"
    shown = frame.head(limit)
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
    ]
    for row in shown.iter_rows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return "\n".join(lines)
