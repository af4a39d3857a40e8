"""Interleaved timing shared by the benchmarks: ratios measured in one run on a noisy machine.

Every candidate runs in each round, in an order rotated from round to round so that none
always runs first (and so benefits, or suffers, from what ran before it); the result per
candidate is the median over rounds of the time per call within a block of calls, and a ratio
of two candidates is best read as the median of their per-round ratios (:func:`paired_ratio`).
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


def interleaved_times(
    candidates: dict[str, Callable[[], object]], rounds: int, steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate in each of ``rounds`` rotated rounds of blocks of
    ``steps`` calls (one list per candidate, in round order). Warm the candidates up before
    calling this."""
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(candidates[name], steps, clock))
    return times


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], rounds: int, steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each candidate over ``rounds`` rotated rounds of blocks of
    ``steps`` calls (:func:`interleaved_times`)."""
    times = interleaved_times(candidates, rounds, steps, clock)
    return {name: statistics.median(t) for name, t in times.items()}


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """``(median, lower quartile, upper quartile)`` of the per-round ratios of two candidates'
    :func:`interleaved_times`. Each round's two blocks run close together, so a slow spell of
    the machine (it can move a whole run by 10-20 %) divides out of the round's ratio, which a
    ratio of the two medians does not do; the quartiles say how far one round can be off."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, middle, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return middle, low, high
