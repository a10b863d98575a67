"""This process's memory as Linux reports it, shared by the benchmarks.

Peak memory of one step is read as ``VmHWM`` after resetting the high-water mark, so each step's
peak is its own rather than the process's lifetime maximum.
"""

import resource
import time
from collections.abc import Callable
from typing import Any


def status_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key.rstrip(":")] = int(kb) / 1024
    return values


def reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def run_measured(run: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run ``run`` once; return its result with wall seconds, RSS before and peak RSS in MB.

    The peak is ``VmHWM`` after a reset of the high-water mark; where the kernel refuses the reset
    it is ``ru_maxrss``, the peak of the whole process so far (an upper bound).
    """
    before = status_mb()["VmRSS"]
    reset = reset_high_water_mark()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    peak = (
        status_mb()["VmHWM"] if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return result, {"seconds": seconds, "rss_before_mb": before, "peak_mb": peak, "reset": reset}
