"""Work for one rank of a small gloo job, run as a script by the ``launch_ranks`` fixture.

``python ranks.py TASK OUT`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``
set (``WORLD_SIZE=1``: a single process). Each task saves what the test compares in
``OUT/rank{RANK}.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from diracnets import distributed
from diracnets.precise_bn import recalibrate_batchnorm


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


if __name__ == "__main__":
    {"precise_bn": precise_bn}[sys.argv[1]](Path(sys.argv[2]))
