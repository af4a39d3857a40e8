"""The Dirac weight node alone, eager on the CPU: its float32 path against its float64 blocks.

For each weight shape of DiracNet-34-1 and DiracNet-34-4 (CIFAR), one forward and backward of
``W_hat = alpha * delta + beta * normalize(W)`` (``dirac_torch._autograd.DiracWeight``) on a
float32 leaf ``W`` with scalar ``alpha`` and ``beta`` leaves, the gradients set to None between
calls as an optimizer does. Two variants, interleaved round by round:

- ``float32 path``: what float32 weights take wherever float32 can carry the computation;
- ``float64 blocks``: the same node with the float32 path refused, so that it works in float64
  row blocks as it does for float64 weights and for the cases the float32 path hands on.

It prints the median time per call of each and the ratio ``float32 path / float64 blocks``.

Run ``python benchmarks/bench_weight_node.py [--rounds 9] [--threads 1] [--clock cpu|wall]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from timing import interleaved_medians

import dirac_torch._autograd as node
from dirac_torch.parametrize import DiracParametrization

SHAPES = [(16, 32, 3, 3), (32, 64, 3, 3), (64, 128, 3, 3), (128, 256, 3, 3), (256, 512, 3, 3)]


def training_step(shape: tuple[int, ...], narrow: bool) -> Callable[[], None]:
    """One forward and backward of the node on a fresh draw of ``shape``."""
    geometry = DiracParametrization(shape).geometry
    w = (torch.randn(shape) * 0.1).requires_grad_()
    alpha, beta = (torch.tensor(v, requires_grad=True) for v in (5.0, 1e-3))
    grad = torch.randn(shape)
    path = node._narrow_forward

    def refused(*args: object) -> None:
        return None

    def step() -> None:
        node._narrow_forward = path if narrow else refused
        try:
            for leaf in (w, alpha, beta):
                leaf.grad = None
            node.DiracWeight.apply(w, alpha, beta, geometry, 1e-12, True).backward(grad)
        finally:
            node._narrow_forward = path

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"weight node forward + backward, float32, CPU, {args.threads} threads, "
          f"{args.rounds} rounds (median {args.clock} us per call)")
    for shape in SHAPES:
        steps = max(5, 2_000_000 // torch.Size(shape).numel())
        candidates = {"float32 path": training_step(shape, True),
                      "float64 blocks": training_step(shape, False)}
        for step in candidates.values():
            step()
        medians = interleaved_medians(candidates, args.rounds, steps, clock)
        fast, slow = medians["float32 path"], medians["float64 blocks"]
        print(f"  {shape!s:18s} float32 path {fast * 1e6:8.1f}   float64 blocks "
              f"{slow * 1e6:8.1f}   ratio {fast / slow:.2f}")


if __name__ == "__main__":
    main()
