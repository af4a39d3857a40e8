"""Accuracy of converted models: which alpha/beta initialisation trains a converted ReLU CNN.

A small ReLU CNN on scikit-learn's 8x8 digits (1347 training and 450 test images, fixed split):
``conv 1->16``, then ``depth`` convs ``16->16`` (3x3, padding 1), each followed by ReLU (and by a
batch norm before the ReLU in the "bn" architecture), then a linear classifier. Each row trains
the plain network, or the network after :func:`dirac_torch.convert.convert_model` with the given
initialisation, for 2 epochs (batch 32) from 3 seeds, and prints the test accuracies. The
numbers are recorded in ``docs/torch.md`` ("Converting a model").

Usage: ``python benchmarks/convert_digits.py`` (one CPU thread; 1-4 minutes).
"""

from __future__ import annotations

import statistics
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from dirac_torch.convert import convert_model

EPOCHS, BATCH, SEEDS, DEPTH, WIDTH = 2, 32, (0, 1, 2), 4, 16

INITS = {
    "plain (no Dirac)": None,
    "paper: alpha 5, beta 1e-3, scalar": {"alpha_init": 5.0, "beta_init": 1e-3,
                                          "per_channel": False},
    "alpha 1, beta 1e-3, scalar": {"alpha_init": 1.0, "beta_init": 1e-3, "per_channel": False},
    "default: alpha 1, beta keep, scalar": {},
    "alpha 1, beta keep, per channel": {"per_channel": True},
}
OPTIMIZERS = {
    "Adam 1e-3": lambda params: torch.optim.Adam(params, 1e-3),
    "SGD 0.01 m0.9": lambda params: torch.optim.SGD(params, 0.01, momentum=0.9),
}


def data() -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:1347], order[1347:]
    return x[train], y[train], x[test], y[test]


def cnn(batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(1, WIDTH, 3, padding=1), nn.ReLU()]
    for _ in range(DEPTH):
        layers.append(nn.Conv2d(WIDTH, WIDTH, 3, padding=1))
        layers += [nn.BatchNorm2d(WIDTH)] if batchnorm else []
        layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(WIDTH * 64, 10))


def accuracy(batchnorm: bool, init: dict | None, make_optimizer, seed: int, sets) -> float:
    x_train, y_train, x_test, y_test = sets
    torch.manual_seed(seed)
    net = cnn(batchnorm)
    if init is not None:
        net = convert_model(net, **init).model
    optimizer = make_optimizer(net.parameters())
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(len(y_train))
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            loss = nn.functional.cross_entropy(net(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return float((net(x_test).argmax(1) == y_test).float().mean())


def main() -> None:
    torch.set_num_threads(1)
    sets = data()
    print(f"| model | init | {' | '.join(OPTIMIZERS)} |")
    print(f"|---|---|{'---|' * len(OPTIMIZERS)}")
    start = time.perf_counter()
    for batchnorm in (False, True):
        for name, init in INITS.items():
            cells = []
            for make_optimizer in OPTIMIZERS.values():
                runs = [100 * accuracy(batchnorm, init, make_optimizer, s, sets) for s in SEEDS]
                cells.append(f"{statistics.mean(runs):.1f} ({min(runs):.1f}-{max(runs):.1f})")
            arch = "conv-BN-ReLU" if batchnorm else "conv-ReLU"
            print(f"| {arch} | {name} | {' | '.join(cells)} |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s; test accuracy %, mean (min-max) over seeds "
          f"{SEEDS}, {EPOCHS} epochs")


if __name__ == "__main__":
    main()
