"""Where the benchmarks write: progress to stderr, so stdout is the report and its JSON line."""

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


def progress(message: str, end: bool = True) -> None:
    """One progress line on stderr; ``end`` marks a step that starts (`` ...``)."""
    print(message + (" ..." if end else ""), file=sys.stderr, flush=True)


@contextlib.contextmanager
def feast_output() -> Iterator[None]:
    """Send what Feast prints (materialization progress) to stderr, keeping stdout the report."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def rounded(value: Any) -> Any:
    """A result for its JSON line: floats to 3 decimals (NaN as null), in lists and dicts too."""
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), 3)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    return value
