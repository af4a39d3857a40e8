"""Speed of the reference, as ratios against a baseline measured in the same run.

1. ``dirac_tensor((1024, 1024, 3, 3), float32)`` against ``np.zeros`` of the same shape, and
   against ``np.zeros`` whose pages are then touched (the cost any consumer pays on first use:
   NumPy's zeros of this size come from calloc/mmap and cost nothing until touched).
2. Reference conv forward + VJP against torch CPU ``conv2d`` forward + backward, float64,
   batch 16, 64 -> 64 channels, 32x32, 3x3, same padding.

Repeats are interleaved and medians compared, since the machines are shared and noisy.
Run: ``python benchmarks/bench_core.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import dirac_core as dc


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(candidates: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each callable, running them in turn ``repeats`` times."""
    for fn in candidates.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(_time(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_dirac_tensor(repeats: int) -> None:
    shape = (1024, 1024, 3, 3)

    def touched_zeros():
        z = np.zeros(shape, np.float32)
        z.reshape(-1)[::1024] = 0  # one write per 4 KiB page
        return z

    med = interleaved({
        "dirac_tensor": lambda: dc.dirac_tensor(shape, dtype=np.float32),
        "np.zeros": lambda: np.zeros(shape, np.float32),
        "np.zeros+touch": touched_zeros,
    }, repeats)
    print(f"dirac_tensor{shape} float32: {med['dirac_tensor'] * 1e3:.2f} ms")
    print(f"  ratio vs np.zeros (untouched pages): {med['dirac_tensor'] / med['np.zeros']:.1f}x")
    print(f"  ratio vs np.zeros + first touch:     "
          f"{med['dirac_tensor'] / med['np.zeros+touch']:.2f}x")


def bench_conv(repeats: int) -> None:
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 64, 32, 32))
    w = rng.normal(size=(64, 64, 3, 3))
    g = rng.normal(size=(16, 64, 32, 32))
    tx, tw, tg = (torch.tensor(a) for a in (x, w, g))

    def reference():
        dc.conv(x, w, padding="same")
        dc.conv_vjp(g, x, w, padding="same")

    def torch_step():
        xr = tx.clone().requires_grad_(True)
        wr = tw.clone().requires_grad_(True)
        torch.nn.functional.conv2d(xr, wr, padding=1).backward(tg)

    med = interleaved({"reference": reference, "torch": torch_step}, repeats)
    print("conv2d fwd+vjp float64 (16, 64, 32, 32) * (64, 64, 3, 3):")
    print(f"  reference {med['reference'] * 1e3:.1f} ms, torch CPU {med['torch'] * 1e3:.1f} ms, "
          f"ratio {med['reference'] / med['torch']:.2f}x (target <= 3x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    bench_dirac_tensor(args.repeats)
    bench_conv(max(3, args.repeats // 3))


if __name__ == "__main__":
    main()
