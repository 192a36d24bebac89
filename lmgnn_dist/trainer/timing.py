"""What a trainer measures about itself: wall seconds per named phase (:class:`PhaseTimer`)
and the process's peak resident memory (:func:`peak_rss_mb`)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Optional


class PhaseTimer:
    """Wall seconds per named phase: ``with timer("sampling"): ...`` or ``timer.add(name, s)``."""

    def __init__(self, seconds: Optional[Dict[str, float]] = None):
        self.seconds: Dict[str, float] = dict(seconds or {})

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
