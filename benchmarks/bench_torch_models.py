"""Folded DiracNet inference against a plain network built directly, and against unfolded.

Times the eval forward of DiracNet-34-1 (CIFAR, batch 64, float32, CPU, 2 threads) three ways,
interleaved round by round so that load on the machine hits all three alike:

- ``folded``:   ``fold_model(diracnet_cifar(34, 1))``;
- ``plain``:    the same shapes written directly with ``nn.Conv2d(bias=True)``, ``NCReLU``, pooling
                and ``nn.Linear`` (the baseline: target ``folded / plain <= 1.02``);
- ``unfolded``: the trained model itself, which recomputes every ``W_hat`` and runs every batch
                norm at each call (the speed-up folding buys).

Run ``python benchmarks/bench_torch_models.py [--rounds 25] [--depth 34] [--width 1]``.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

import torch
from timing import interleaved_medians
from torch import nn

from dirac_core import nets
from dirac_torch import NCReLU
from dirac_torch.fold import fold_model
from dirac_torch.models import GlobalAvgPool, diracnet_cifar


def plain_network(spec: nets.NetSpec) -> nn.Sequential:
    """The folded shape of ``spec`` written by hand: no BN, every conv a biased nn.Conv2d.

    Module names follow the spec (``group0.1``, ...), so a folded model's ``state_dict`` loads.
    """
    stages = OrderedDict()
    for stage in spec.stages:
        layers = OrderedDict()
        for index, layer in enumerate(stage.layers):
            if isinstance(layer, nets.BatchNorm):
                continue
            layers[str(index)] = _direct(layer)
        stages[stage.name] = nn.Sequential(layers)
    return nn.Sequential(stages)


def _direct(layer: nets.Layer) -> nn.Module:
    if isinstance(layer, nets.Conv):
        padding = layer.kernel_size // 2 if layer.padding == "same" else layer.padding
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=padding, bias=True)
    if isinstance(layer, nets.NCReLU):
        return NCReLU()
    if isinstance(layer, nets.ReLU):
        return nn.ReLU()
    if isinstance(layer, nets.MaxPool):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nets.GlobalAvgPool):
        return GlobalAvgPool()
    return nn.Linear(layer.in_features, layer.out_features)


def randomize_batchnorms(model: nn.Module) -> None:
    """Trained-looking statistics, so that folding has something to fold."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_(1, 0.2)
            bn.bias.normal_(0, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=34)
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--calls", type=int, default=1, help="forward calls per timing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    model = diracnet_cifar(args.depth, args.width)
    randomize_batchnorms(model)
    model.eval()
    folded = fold_model(model)
    plain = plain_network(model.spec).eval()
    plain.load_state_dict(folded.state_dict())
    x = torch.randn(args.batch, 3, 32, 32)

    nets_ = {"folded": folded, "plain": plain, "unfolded": model}
    with torch.inference_mode():
        reference = model(x)
        for name, net in nets_.items():  # warm-up, and the three must agree
            error = float((net(x) - reference).norm() / reference.norm())
            if error > 1e-5:
                raise SystemExit(f"{name} disagrees with the unfolded model: {error:.2e}")
        calls = {name: (lambda net=net: net(x)) for name, net in nets_.items()}
        medians = interleaved_medians(calls, args.rounds, args.calls)

    print(f"{model.spec.name} eval forward, batch {args.batch}, float32, CPU, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.calls} calls "
          f"(median ms per call)")
    for name, median in medians.items():
        print(f"  {name:<9} {1e3 * median:8.2f} ms")
    ratio = medians["folded"] / medians["plain"]
    print(f"folded / plain nn.Conv2d network: {ratio:.3f}x (target <= 1.02x)")
    speedup = medians["unfolded"] / medians["folded"]
    print(f"unfolded / folded (speed-up from folding): {speedup:.2f}x")


if __name__ == "__main__":
    main()
