"""Each call under fuzz is held to a time and a memory budget, and counted."""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Wall time one call may take (a pass must never block the event loop long).
MAX_SECONDS = 1.0
#: Memory one call may allocate at its peak.
MAX_BYTES = 50 * 2**20

COUNTS: Counter[str] = Counter()
SLOWEST: dict[str, float] = {}
PEAKS: dict[str, int] = {}


def bounded(target: str, call: Callable[[], T]) -> T:
    """``call()``, failing the example if it takes longer than MAX_SECONDS or
    allocates more than MAX_BYTES at its peak; exceptions pass through."""
    COUNTS[target] += 1
    tracemalloc.start()
    start = time.perf_counter()
    try:
        return call()
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        SLOWEST[target] = max(SLOWEST.get(target, 0.0), elapsed)
        PEAKS[target] = max(PEAKS.get(target, 0), peak)
        assert elapsed < MAX_SECONDS, f"{target}: {elapsed:.2f}s for one example"
        assert peak < MAX_BYTES, f"{target}: {peak / 2**20:.0f} MiB for one example"
