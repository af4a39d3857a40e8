"""Whole-network training step of DiracNet-34-1 against its plain control, eager and compiled.

Times, interleaved round by round (the order rotated each round, so that load on a shared
machine hits every variant alike), on the CPU in float32:

- ``dirac eager`` / ``plain eager``: one SGD training step (forward, cross-entropy, backward,
  ``optimizer.step``) of ``diracnet_cifar(34, 1)`` and of its plain control
  ``plain_cifar(34, 1)`` (the same network with ``nn.Conv2d`` instead of Dirac convolutions);
- ``dirac compiled`` / ``plain compiled``: the same with the models wrapped by
  ``torch.compile(fullgraph=True)`` (inductor; the optimizer step stays eager);
- ``folded compiled`` / ``direct compiled``: the eval forward of ``fold_model`` of the trained
  DiracNet against the same plain network written directly with ``nn.Conv2d(bias=True)``
  (:func:`bench_torch_models.plain_network`), both compiled.

It prints the medians and the ratios ``dirac / plain`` (targets: at a CIFAR batch <= 1.00
eager and <= 1.02 compiled; at ``--batch 16 --size 16`` <= 1.10 both ways) and ``folded /
direct`` (target: 1 within noise). The defaults are a CIFAR training batch (64 images of
32x32); a run takes about 4 minutes on a quiet 2-core machine, one of them compiling.
``--batch 16 --size 16`` shows the weight node's fixed cost, which small steps do not hide.

Run ``python benchmarks/bench_torch_train.py [--rounds 5] [--steps 1] [--batch 64] [--size 32]
[--threads 2] [--clock wall|cpu]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from bench_torch_models import plain_network, randomize_batchnorms
from timing import interleaved_medians
from torch import nn

from dirac_torch.fold import fold_model
from dirac_torch.models import diracnet_cifar, plain_cifar


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD step of ``model`` (possibly compiled) on the batch ``(x, y)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def eval_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def build_steps(args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    dirac, plain = diracnet_cifar(args.depth, 1), plain_cifar(args.depth, 1)
    dirac_c, plain_c = diracnet_cifar(args.depth, 1), plain_cifar(args.depth, 1)
    trained = diracnet_cifar(args.depth, 1)
    randomize_batchnorms(trained)
    folded = fold_model(trained)
    direct = plain_network(trained.spec).eval()
    direct.load_state_dict(folded.state_dict())

    def compiled(model: nn.Module) -> nn.Module:
        return torch.compile(model, fullgraph=True)

    return {
        "dirac eager": train_step(dirac, x, y),
        "plain eager": train_step(plain, x, y),
        "dirac compiled": train_step(compiled(dirac_c), x, y),
        "plain compiled": train_step(compiled(plain_c), x, y),
        "folded compiled": eval_step(compiled(folded), x),
        "direct compiled": eval_step(compiled(direct), x),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=34)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall time, or this process's CPU time (with --threads 1: the compute itself, "
        "robust to a machine shared with other work)",
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)

    steps = build_steps(args)
    start = time.perf_counter()
    for step in steps.values():  # compiles, then warms up every variant
        step()
        step()
    print(f"compile and warm-up: {time.perf_counter() - start:.0f} s")
    medians = interleaved_medians(steps, args.rounds, args.steps, clock)
    print(f"DiracNet-{args.depth}-1, batch {args.batch}, {args.size}x{args.size}, float32, "
          f"CPU, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps "
          f"(median {args.clock} ms per step)")
    for name, median in medians.items():
        print(f"  {name:<16} {1e3 * median:8.2f} ms")
    ratios = {
        "eager dirac / plain": medians["dirac eager"] / medians["plain eager"],
        "compiled dirac / plain": medians["dirac compiled"] / medians["plain compiled"],
        "compiled folded / direct": medians["folded compiled"] / medians["direct compiled"],
    }
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.3f}x")
    return ratios


if __name__ == "__main__":
    main()
