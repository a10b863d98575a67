"""Wall-time statistics of repeated calls, shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Timed:
    """Every timed call of one side: its wall time and its result."""

    seconds: list[float]
    results: list[Any]

    @property
    def median(self) -> float:
        """The median wall time, in seconds."""
        return statistics.median(self.seconds)

    @property
    def result(self) -> Any:
        """The last timed call's result."""
        return self.results[-1]


def same_treatment(
    sides: dict[str, Callable[[], Any]], repeats: int, warmups: int = 1
) -> dict[str, Timed]:
    """Time every side the same way: ``warmups`` untimed calls each, then ``repeats`` timed ones.

    The repeats are interleaved (one call of each side per round, the order rotating every
    round), so a neighbour's load on the machine falls on every side alike. Compare the sides
    by their ``median``.
    """
    names = list(sides)
    for _ in range(warmups):
        for name in names:
            sides[name]()
    out = {name: Timed([], []) for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            result = sides[name]()
            out[name].seconds.append(time.perf_counter() - start)
            out[name].results.append(result)
    return out


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
