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

With ``--floor``, also ``floor eager`` / ``floor compiled``: the plain control with the same
convs parametrized by one multiply per filter through ``torch.nn.utils.parametrize``
(:func:`floor_network`), what any reparameterized weight costs a PyTorch step: the part of
``dirac / plain`` that no weight node can remove.

It prints the median time per step of each variant and, for each pair, the median of the
per-round ratios with their quartiles (:func:`timing.paired_ratio`): ``dirac / plain``
(targets: at a CIFAR batch <= 1.00 eager and <= 1.02 compiled; at ``--batch 16 --size 16``
<= 1.10 both ways), ``folded / direct`` (target: 1 within noise) and ``floor / plain``. The
defaults are a CIFAR training batch (64 images of 32x32); a run takes about 5 minutes on a
quiet 2-core machine, one of them compiling. ``--batch 16 --size 16`` shows the weight
node's fixed cost, which small steps do not hide.

With ``--phases``, also each training step's forward (with the loss), backward and optimizer
step, each against the plain control's in the same mode: where a step's extra time goes.

Run ``python benchmarks/bench_torch_train.py [--rounds 15] [--steps 1] [--batch 64]
[--size 32] [--threads 2] [--clock wall|cpu] [--floor] [--phases]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from bench_torch_models import plain_network, randomize_batchnorms
from timing import interleaved_times, paired_ratio
from torch import nn
from torch.nn.utils import parametrize

from dirac_torch.fold import fold_model
from dirac_torch.layers import DiracConv2d
from dirac_torch.models import diracnet_cifar, plain_cifar

PHASES = ("forward", "backward", "optimizer")


def train_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor,
    phases: list[tuple[float, ...]] | None = None, clock: Callable[[], float] = time.process_time,
) -> Callable[[], None]:
    """One SGD step of ``model`` (possibly compiled) on the batch ``(x, y)``; with ``phases``,
    each step appends the ``clock`` time of its :data:`PHASES` (forward with the loss,
    ``backward()``, ``optimizer.step()``) to it."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    def step_by_phase() -> None:
        assert phases is not None
        start = clock()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        forward = clock()
        loss.backward()
        backward = clock()
        optimizer.step()
        phases.append((forward - start, backward - forward, clock() - backward))

    return step if phases is None else step_by_phase


def eval_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


class PerFilterScale(nn.Module):
    """``W = beta * V`` per filter: the cheapest weight function with a parameter of its own."""

    def __init__(self, filters: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(filters))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.beta.view(-1, *(1,) * (v.dim() - 1))


def floor_network(depth: int) -> nn.Module:
    """The plain control with each conv that the DiracNet parametrizes parametrized instead by
    :class:`PerFilterScale` through ``torch.nn.utils.parametrize``: what any reparameterized
    weight costs a PyTorch training step (a parametrization, a multiply and its backward, one
    more parameter per layer), below which no Dirac weight node can go."""
    dirac = dict(diracnet_cifar(depth, 1).named_modules())
    plain = plain_cifar(depth, 1)
    for name, module in plain.named_modules():
        if isinstance(dirac.get(name), DiracConv2d):
            parametrize.register_parametrization(module, "weight",
                                                 PerFilterScale(module.out_channels))
    return plain


def build_steps(
    args: argparse.Namespace, phases: dict[str, list[tuple[float, ...]]] | None = None,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, Callable[[], None]]:
    """Every variant's step; with ``phases``, the training steps record their phases in
    ``phases[name]``."""
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

    def trained_by(name: str, model: nn.Module) -> Callable[[], None]:
        record = None if phases is None else phases.setdefault(name, [])
        return train_step(model, x, y, record, clock)

    steps = {
        "dirac eager": trained_by("dirac eager", dirac),
        "plain eager": trained_by("plain eager", plain),
        "dirac compiled": trained_by("dirac compiled", compiled(dirac_c)),
        "plain compiled": trained_by("plain compiled", compiled(plain_c)),
        "folded compiled": eval_step(compiled(folded), x),
        "direct compiled": eval_step(compiled(direct), x),
    }
    if args.floor:
        steps["floor eager"] = trained_by("floor eager", floor_network(args.depth))
        steps["floor compiled"] = trained_by("floor compiled",
                                             compiled(floor_network(args.depth)))
    return steps


def report_phases(phases: dict[str, list[tuple[float, ...]]]) -> None:
    """Each training variant's median time per phase and, against the plain control of the
    same mode, the median of the per-step ratios [quartiles] (the steps of one round pair up)."""
    print("phases: median ms per step; / plain: median of the per-step ratios [quartiles]")
    for name, record in phases.items():
        control = phases[f"plain {name.split()[1]}"]
        if record is control:
            continue
        cells = []
        for i, phase in enumerate(PHASES):
            ours = [t[i] for t in record]
            ratio, low, high = paired_ratio(ours, [t[i] for t in control])
            cells.append(f"{phase} {1e3 * statistics.median(ours):7.2f} ms "
                         f"{ratio:.3f}x [{low:.3f}, {high:.3f}]")
        print(f"  {name:<16} " + " | ".join(cells))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=34)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=1, help="steps per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--floor", action="store_true",
        help="also time the plain control with its convs parametrized by one multiply per "
        "filter (floor_network): the cost of any reparameterized weight in PyTorch",
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="wall time, or this process's CPU time (with --threads 1: the compute itself, "
        "robust to a machine shared with other work)",
    )
    parser.add_argument(
        "--phases", action="store_true",
        help="also time each training step's forward (with the loss), backward and optimizer "
        "step, and compare each with the plain control's",
    )
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)

    phases: dict[str, list[tuple[float, ...]]] | None = {} if args.phases else None
    steps = build_steps(args, phases, clock)
    start = time.perf_counter()
    for step in steps.values():  # compiles, then warms up every variant
        step()
        step()
    print(f"compile and warm-up: {time.perf_counter() - start:.0f} s")
    for record in (phases or {}).values():
        record.clear()
    times = interleaved_times(steps, args.rounds, args.steps, clock)
    print(f"DiracNet-{args.depth}-1, batch {args.batch}, {args.size}x{args.size}, float32, "
          f"CPU, {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps "
          f"(median {args.clock} ms per step)")
    for name, per_round in times.items():
        print(f"  {name:<16} {1e3 * statistics.median(per_round):8.2f} ms")
    pairs = {"eager dirac / plain": ("dirac eager", "plain eager"),
             "compiled dirac / plain": ("dirac compiled", "plain compiled"),
             "compiled folded / direct": ("folded compiled", "direct compiled")}
    if args.floor:
        pairs |= {"eager floor / plain": ("floor eager", "plain eager"),
                  "compiled floor / plain": ("floor compiled", "plain compiled")}
    print("ratios: median of the per-round ratios [quartiles]")
    ratios = {}
    for label, (num, den) in pairs.items():
        ratio, low, high = paired_ratio(times[num], times[den])
        ratios[label] = ratio
        print(f"{label}: {ratio:.3f}x [{low:.3f}, {high:.3f}]")
    if phases is not None:
        report_phases(phases)
    return ratios


if __name__ == "__main__":
    main()
