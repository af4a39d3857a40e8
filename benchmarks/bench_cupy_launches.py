"""Launch-counted benchmark of the CuPy backend's host side: runs on any machine.

Without a GPU, what the launchers do can still be counted exactly: kernel launches, blocks per
launch, the longest loop a thread runs, kernel lookups. CuPy is replaced by a NumPy-backed
stand-in that records each launch (the kernels do not run: only the shapes of the work are
measured). Each figure is compared with a baseline in the same run:

- few long filters (``(1, 10**7)`` and ``(4, 10**6)``): the split launches (several blocks per
  filter, a launch per reduction) against one block per filter (the split turned off); the
  "thread steps" are, summed over a call's launches, the most entries one thread visits, a
  model of the critical path when the blocks run side by side (a GPU runs 132 multiprocessors
  on an H100; one block per filter leaves all but one idle);
- ``normalize_filters_vjp``: its launches against those of the Dirac-weight VJP it used to run;
- kernel lookups: per 100 calls, with the functions kept against a lookup per launch.

    python benchmarks/bench_cupy_launches.py
"""

from __future__ import annotations

import sys
import types
from math import ceil
from typing import Any

import numpy as np

from dirac_cupy import fused_math, kernels

EPS = 1e-12
WEIGHT = {"eps": EPS, "normalize": True, "groups": 1, "policy": "tile"}


_S = kernels.STAGES
PASSES = {
    ("dirac_weight_forward", _S["all"]): 3,  # max, squares, output
    ("dirac_weight_backward", _S["all"]): 5,  # max |w|, max |beta g|, squares, sums, output
    ("dirac_weight_forward", _S["max"]): 1,
    ("dirac_weight_backward", _S["max"]): 2,
    **{(k, _S[s]): 1 for k in ("dirac_weight_forward", "dirac_weight_backward")
       for s in ("squares", "sums", "output")},
}
"""Passes over its chunk a block makes at each stage (with normalization)."""


class Counter:
    """Stands in for ``cupy``: records every launch's kernel and grid, and each lookup."""

    def __init__(self) -> None:
        self.launches: list[tuple[str, int, Any]] = []
        self.lookups = 0
        counter = self

        class Module:
            def __init__(self, code: str, options: Any = (), name_expressions: Any = ()):
                pass

            def compile(self) -> None:
                pass

            def get_function(self, name: str) -> Any:
                counter.lookups += 1
                return lambda grid, block, args: counter.launches.append((name, grid[0], args))

        self.module = types.SimpleNamespace(
            RawModule=Module, ascontiguousarray=np.ascontiguousarray, empty=np.empty,
            empty_like=np.empty_like, cuda=types.SimpleNamespace(Device=lambda: None))

    def thread_steps(self) -> int:
        """Summed over the recorded launches: the most entries one thread visits (of its
        chunk, and of the partial results it reduces)."""
        steps = 0
        for name, _, args in self.launches:
            if name.startswith("dirac_weight"):
                parts, chunk, stage = int(args[-10]), int(args[-11]), int(args[-8])
                passes = PASSES[name.partition("<")[0], stage]
                steps += passes * ceil(chunk / kernels.BLOCK) + ceil(parts / kernels.BLOCK)
            elif name.startswith("reduce_narrow"):
                steps += ceil(int(args[3]) / kernels.BLOCK)  # count: the parts summed
        return steps


def _counted(fn: Any, split: bool) -> Counter:
    counter = Counter()
    saved = sys.modules.get("cupy"), kernels._device_of, kernels.weight_split
    sys.modules["cupy"] = counter.module  # type: ignore[assignment]
    kernels._device_of = lambda x: 0
    if not split:
        kernels.weight_split = lambda out_channels, length: (1, length)
    kernels._module.cache_clear()
    kernels._function.cache_clear()
    try:
        fn()
    finally:
        cupy, kernels._device_of, kernels.weight_split = saved
        if cupy is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = cupy
        kernels._module.cache_clear()
        kernels._function.cache_clear()
    return counter


def long_filters() -> None:
    print("few long filters: split launches vs one block per filter (same run)")
    for shape in ((1, 10**7), (4, 10**6)):
        w = np.zeros(shape)
        calls = {
            "dirac_weight": lambda w=w: kernels.dirac_weight(w, np.asarray(1.0),
                                                             np.asarray(1.0), **WEIGHT),
            "dirac_weight_vjp": lambda w=w: kernels.dirac_weight_vjp(
                w, w, np.asarray(1.0), np.asarray(1.0), **WEIGHT),
        }
        parts, _ = fused_math.weight_split(*shape)
        for name, call in calls.items():
            one, split = _counted(call, split=False), _counted(call, split=True)
            print(f"  {name:<17} w{shape}: blocks per weight launch {shape[0]} -> "
                  f"{shape[0] * parts}; launches {len(one.launches)} -> {len(split.launches)}; "
                  f"thread steps {one.thread_steps()} -> {split.thread_steps()} "
                  f"({one.thread_steps() / split.thread_steps():.0f}x fewer)")


def normalize_vjp() -> None:
    w = np.zeros((64, 128, 3, 3))
    now = _counted(lambda: kernels.normalize_filters_vjp(w, w, eps=EPS), split=True)
    zero, one = fused_math.unit_scales(w)
    before = _counted(lambda: kernels.dirac_weight_vjp(w, w, zero, one, **WEIGHT), split=True)
    print(f"normalize_filters_vjp: {len(now.launches)} launch per call against "
          f"{len(before.launches)} for the Dirac-weight VJP it ran before "
          f"({len(before.launches) / len(now.launches):.0f}x fewer; before this change that VJP "
          f"also ran two CuPy sums)")


def lookups() -> None:
    x = np.zeros((8, 16, 4))

    def calls(forget: bool) -> None:
        for _ in range(100):
            if forget:  # the baseline: a lookup (a new RawKernel in CuPy) per launch
                kernels._function.cache_clear()
            kernels.ncrelu(x, axis=1)

    kept, per_launch = _counted(lambda: calls(False), True), _counted(lambda: calls(True), True)
    print(f"kernel lookups per 100 ncrelu calls: {kept.lookups} kept against "
          f"{per_launch.lookups} looked up per launch")


def main() -> int:
    long_filters()
    normalize_vjp()
    lookups()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
