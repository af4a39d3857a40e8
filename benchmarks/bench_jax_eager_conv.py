"""Eager JAX convolutions of new geometries: the padded path against each geometry's own program.

Two workloads, each run with the padded path of ``dirac_jax.padded_conv`` (the default) and
with it switched off (``OWN_PROGRAM_AFTER = 0``: every call compiles and runs the geometry's
own program, as before), on float32 CPU arrays through ``dc.conv`` and ``dc.conv_vjp``:

- *stream*: ``--geometries`` small convolutions, each of a geometry not seen before (1-d and
  2-d, kernels 1-3, strides 1-2, paddings 0-1, 1-2 groups, batch 1-2, 1-6 channels per group),
  each called once forward and once backward; the two modes get disjoint geometry sets drawn
  from the same distribution, in alternating blocks;
- *steady*: one geometry called over and over after warm-up (a steady shape gets its own
  program after 16 calls, so the two modes should be level).

CPU time of this process (``time.process_time``) and wall time are printed, with the ratio
padded / own (below 1: the padded path is faster). Run:
``python benchmarks/bench_jax_eager_conv.py [--geometries 60] [--steady 300]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

import dirac_core as dc
from dirac_jax import padded_conv


def geometries(seed: int) -> Iterator[tuple[tuple[int, ...], tuple[int, ...], dict]]:
    """An endless stream of small convolution geometries ``(x_shape, w_shape, kwargs)``."""
    rng = np.random.default_rng(seed)
    while True:
        ndim, groups = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        kernel = tuple(int(k) for k in rng.integers(1, 4, ndim))
        sizes = tuple(int(k + rng.integers(0, 6)) for k in kernel)
        x_shape = (int(rng.integers(1, 3)), groups * int(rng.integers(1, 7)), *sizes)
        w_shape = (groups * int(rng.integers(1, 4)), x_shape[1] // groups, *kernel)
        kwargs = {"stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, 2)),
                  "groups": groups}
        yield x_shape, w_shape, kwargs


def call(x: jax.Array, w: jax.Array, kwargs: dict) -> None:
    y = dc.conv(x, w, **kwargs)
    jax.block_until_ready(dc.conv_vjp(jnp.ones_like(y), x, w, **kwargs))


def operands(x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[jax.Array, ...]:
    rng = np.random.default_rng(0)
    return tuple(jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, w_shape))


def timed(work: list, own: bool) -> tuple[float, float]:
    """CPU and wall seconds for the calls in ``work``, in one mode."""
    padded_conv.OWN_PROGRAM_AFTER = 0 if own else DEFAULT
    cpu, wall = time.process_time(), time.perf_counter()
    for x_shape, w_shape, kwargs in work:
        call(*operands(x_shape, w_shape), kwargs)
    return time.process_time() - cpu, time.perf_counter() - wall


DEFAULT = padded_conv.OWN_PROGRAM_AFTER


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometries", type=int, default=60)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--steady", type=int, default=300)
    args = parser.parse_args(argv)
    stream, seen = geometries(1), set()
    totals = {"padded": [0.0, 0.0], "own": [0.0, 0.0]}
    per_block = max(1, args.geometries // args.blocks)
    for block in range(args.blocks):
        for mode in (("padded", "own") if block % 2 == 0 else ("own", "padded")):
            work = []
            while len(work) < per_block:
                geo = next(stream)
                key = repr(geo)
                if key not in seen:
                    seen.add(key)
                    work.append(geo)
            cpu, wall = timed(work, own=mode == "own")
            totals[mode][0] += cpu
            totals[mode][1] += wall
    n = per_block * args.blocks
    print(f"stream of {n} new geometries per mode (forward + VJP, float32):")
    for mode, (cpu, wall) in totals.items():
        print(f"  {mode:6s}  {1e3 * cpu / n:7.1f} ms CPU  {1e3 * wall / n:7.1f} ms wall "
              "per geometry")
    print(f"  ratio padded / own: CPU {totals['padded'][0] / totals['own'][0]:.2f}, "
          f"wall {totals['padded'][1] / totals['own'][1]:.2f}")

    x_shape, w_shape, kwargs = (2, 8, 12, 12), (8, 8, 3, 3), {"padding": 1}
    steady = {}
    for mode in ("padded", "own"):
        padded_conv._SEEN.clear()
        for _ in range(DEFAULT + 2):  # past the padded calls of a new geometry: steady state
            padded_conv.OWN_PROGRAM_AFTER = 0 if mode == "own" else DEFAULT
            call(*operands(x_shape, w_shape), kwargs)
        x, w = operands(x_shape, w_shape)
        cpu = time.process_time()
        for _ in range(args.steady):
            call(x, w, kwargs)
        steady[mode] = (time.process_time() - cpu) / args.steady
    print(f"steady geometry {x_shape} * {w_shape}, {args.steady} calls: padded-path build "
          f"{1e3 * steady['padded']:.3f} ms, own {1e3 * steady['own']:.3f} ms CPU per call, "
          f"ratio {steady['padded'] / steady['own']:.2f}")


if __name__ == "__main__":
    main()
