"""A benchmark process's own peak memory."""

from __future__ import annotations


def own_peak_rss_mb() -> float:
    """This process's peak resident memory, in MB: VmHWM, the high-water mark of its own memory map.

    Not ``ru_maxrss``: Linux keeps there the larger of this program's peak and the peak of the process it was
    forked from before the exec, so a worker started by a parent that had built a 3M-row table reported that
    table's memory as its own.
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
