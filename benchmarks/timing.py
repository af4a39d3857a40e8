"""Interleaved timing shared by the benchmarks: ratios measured in one run on a noisy machine.

Every candidate runs in each round, in an order rotated from round to round so that none
always runs first (and so benefits, or suffers, from what ran before it); the result per
candidate is the median over rounds of the time per call within a block of calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(
    step: Callable[[], object], steps: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds per call over a block of ``steps`` calls, by ``clock`` (wall time by default)."""
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], rounds: int, steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each candidate over ``rounds`` rotated rounds of blocks of
    ``steps`` calls. Warm the candidates up before calling this."""
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(candidates[name], steps, clock))
    return {name: statistics.median(t) for name, t in times.items()}
