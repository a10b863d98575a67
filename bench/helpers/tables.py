"""Plain-text tables for the benchmarks' side-by-side figures."""

from typing import Any


def cell(value: Any) -> str:
    """One table cell: thousands separators, 3 decimals below 100, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print a titled plain-text table, text columns left-aligned and numbers right-aligned."""
    cells = [header, *[[cell(v) for v in row] for row in rows]]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(header))
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric, strict=True)
        ).rstrip()
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    print(f"\n== {title} ==")
    print("\n".join(lines))
