"""Training step of ``DiracConv2d`` against a plain ``nn.Conv2d`` of the same shape.

The layer of a DiracNet after NCReLU: 2*64 = 128 input channels -> 64, 3x3, batch 32, 32x32,
float32, CPU, 2 threads. One step is forward + backward (the input requires grad, as it does
inside a network). The two layers are timed alternately, in blocks of steps, the order
swapped every round; the ratio of the medians is printed. Target (issue 3): <= 1.10.

Run: ``.venv/bin/python benchmarks/bench_torch_layer.py [--rounds 15] [--steps 3]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import interleaved_medians, timed
from torch import nn

import dirac_torch as dt


def make_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """One training step: forward, then backward of a fixed output gradient."""

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)

    return step


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed block")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    in_channels, out_channels = 128, 64
    dirac = dt.DiracConv2d(in_channels, out_channels, 3)
    plain = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    x = torch.randn(args.batch, in_channels, args.size, args.size, requires_grad=True)
    grad = torch.randn(args.batch, out_channels, args.size, args.size)
    steps = {"DiracConv2d": make_step(dirac, x, grad), "nn.Conv2d": make_step(plain, x, grad)}

    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches
        timed(step, 2)
    medians = interleaved_medians(steps, args.rounds, args.steps)
    ratio = medians["DiracConv2d"] / medians["nn.Conv2d"]
    print(
        f"training step, 128->64 3x3, batch {args.batch}, {args.size}x{args.size}, float32, "
        f"CPU, {args.threads} threads, {args.rounds} rounds x {args.steps} steps"
    )
    for name, median in medians.items():
        print(f"  {name:12s} median {median * 1e3:8.2f} ms/step")
    print(f"ratio DiracConv2d / nn.Conv2d = {ratio:.3f}  (target <= 1.10)")
    return ratio


if __name__ == "__main__":
    main()
