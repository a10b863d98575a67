"""Wall-time statistics of repeated calls, shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls, with the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def timed(call: Callable[[int], Any], count: int) -> list[float]:
    """Wall time of ``count`` calls of ``call(n)``, after a short warm-up."""
    for n in range(10):
        call(-1 - n)
    out = []
    for n in range(count):
        started = time.perf_counter()
        call(n)
        out.append(time.perf_counter() - started)
    return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}
