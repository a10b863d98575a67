"""This process's memory as Linux reports it, shared by the benchmarks.

Peak memory of one step is read as ``VmHWM`` after resetting the high-water mark, so each step's
peak is its own rather than the process's lifetime maximum.
"""


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
