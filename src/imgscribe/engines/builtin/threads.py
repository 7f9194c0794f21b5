"""How many CPU threads the built-in models use.

The models are small, so more than 4 threads buy nothing; and on a busy machine extra threads cost
far more than they give (measured on 2 cores with a load average of 10: EfficientNet-Lite0 took
0.22 s with 1 thread and 4.3 s with 2; OCR 1.3 s with 1 thread and 3.2 s with 2). So the count is
the idle cores (this process counted as one), between 1 and 4, looked at when a model runs.
"""

from __future__ import annotations

import os

MAX_THREADS = 4


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_threads() -> int:
    n = cpu_count()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    idle = n - busy + 1  # our own work counts in the load average
    return max(1, min(MAX_THREADS, n, int(idle + 0.5)))
