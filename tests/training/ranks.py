"""Work for one rank of a small gloo job, run as a script by the ``launch_ranks`` fixture.

``python ranks.py TASK OUT`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
set (``WORLD_SIZE=1``: a single process). Each task saves what the test compares in
``OUT/rank{RANK}.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

import torch
from torch import nn

from diracnets import distributed
from diracnets.config import TrainConfig
from diracnets.datasets import Augment, Dataset, load_digits_dataset
from diracnets.precise_bn import recalibrate_batchnorm
from diracnets.trainer import Trainer, TrainingInterrupted


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3),
                         nn.BatchNorm2d(4)).double()


def shard(context: distributed.Context, per_rank: int = 3) -> list[tuple[torch.Tensor, None]]:
    """Batch ``b`` of rank ``r`` is batch ``r * per_rank + b`` of one fixed list of batches."""
    gen = torch.Generator().manual_seed(0)
    everything = [(torch.randn(6, 2, 7, 7, generator=gen, dtype=torch.float64) * 3 + 1, None)
                  for _ in range(per_rank * context.world)]
    return everything[context.rank * per_rank:(context.rank + 1) * per_rank]


def precise_bn(out: Path) -> None:
    context, _ = distributed.setup("cpu")
    net = small_net()
    count = recalibrate_batchnorm(net, shard(context), context)
    torch.save({"count": count, "buffers": dict(net.named_buffers())},
               out / f"rank{context.rank}.pt")
    distributed.teardown(context)


def flipped_digits() -> Dataset:
    """256 training digits with random crops *and* flips, so both draws are compared."""
    digits = load_digits_dataset()
    return dataclasses.replace(digits, train=digits.train.subset(256),
                               augment=Augment(pad=1, flip=True))


def train(out: Path, sync_bn: bool, steps: int = 2,
          stop_after: int | None = None) -> dict[str, torch.Tensor]:
    """A DiracNet-10 trained ``steps`` global batches of 64 (one epoch); its weights. With
    ``stop_after``, interrupted (Ctrl-C) after that batch, as :meth:`Trainer.request_stop`
    does it (under DDP the ranks agree one batch later)."""
    config = TrainConfig(depth=10, epochs=1, batch_size=64, train_limit=64 * steps,
                         sync_bn=sync_bn, progress=False, device="cpu", out=str(out))

    def interrupt(event: str, trainer: Trainer) -> None:
        if event == "batch_end" and trainer.batch == stop_after:
            trainer.request_stop()

    trainer = Trainer(config, dataset=flipped_digits(), log=None, callbacks=[interrupt])
    with contextlib.suppress(TrainingInterrupted):
        trainer.fit()
    return trainer.model.state_dict()


def resumed(out: Path) -> dict[str, torch.Tensor]:
    """The run in ``out`` continued to its end; its weights."""
    trainer = Trainer.from_checkpoint(out, dataset=flipped_digits(), log=None)
    trainer.fit()
    return trainer.model.state_dict()


def resume(out: Path) -> None:
    """Start a run of 4 steps and interrupt it after the first (2 -> 1); continue the run a
    single process started in ``out / "one-to-two"`` (1 -> 2)."""
    train(out / "two-to-one", sync_bn=True, steps=4, stop_after=1)
    weights = resumed(out / "one-to-two")
    torch.save(weights, out / f"rank{os.environ['RANK']}.pt")


def sync_bn(out: Path) -> None:
    """A training with ``sync_bn``; then :func:`float64_steps` with and without it."""
    weights = {"trainer": train(out / "run", sync_bn=True)}
    context = distributed.Context(int(os.environ["RANK"]), 2)
    for sync in (True, False):
        weights[f"float64-{sync}"] = float64_steps(context, sync)
    torch.save(weights, out / f"rank{context.rank}.pt")


def float64_steps(context: distributed.Context, sync: bool = True,
                  steps: int = 3) -> dict[str, torch.Tensor]:
    """SGD steps of :func:`small_net` (plus a classifier) in float64 on global batches of 12,
    this rank's share of each; with several ranks, wrapped in DDP (and synchronized if
    ``sync``)."""
    from diracnets.sync_bn import synchronize_batchnorm

    net = nn.Sequential(*small_net(), nn.Flatten(), nn.Linear(36, 3)).double()
    model = net
    if context.enabled:
        if sync:
            synchronize_batchnorm(net)
        model = nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(1)
    share = 12 // context.world
    for _ in range(steps):
        images = torch.randn(12, 2, 7, 7, generator=gen, dtype=torch.float64) * 2 + 0.5
        labels = torch.randint(0, 3, (12,), generator=gen)
        mine = slice(context.rank * share, (context.rank + 1) * share)
        loss = nn.functional.cross_entropy(model(images[mine]), labels[mine])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.state_dict()


if __name__ == "__main__":
    {"precise_bn": precise_bn, "sync_bn": sync_bn, "resume": resume}[sys.argv[1]](Path(sys.argv[2]))
