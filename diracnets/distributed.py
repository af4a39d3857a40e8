"""Data-parallel plumbing for runs launched by ``torchrun`` (or any launcher that sets the same
environment): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.

One process per device; gloo on CPU, NCCL on CUDA. Without those variables everything here is
a no-op for a single process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(request: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's CUDA device when there is one, else the CPU."""
    if request == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(request)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={request!r} was asked for but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={request!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s), numbered from 0")
    return device


def setup(device_request: str = "auto") -> tuple[Context, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(), pick_device(device_request)
    context = Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = pick_device(device_request, context.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=context.rank, world_size=world)
    return context, device


def teardown(context: Context) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum ``values`` over ranks in place (identity for one process)."""
    if context.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(module: torch.nn.Module, context: Context) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics drift per rank)."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather(value: Any, context: Context) -> list[Any]:
    """Every rank's ``value``, in rank order."""
    if not context.enabled:
        return [value]
    out: list[Any] = [None] * context.world
    dist.all_gather_object(out, value)
    return out


def on_main(action: Callable[[], T], context: Context) -> T | None:
    """Run ``action`` on rank 0 only; its result there (``None`` on the other ranks).

    An exception ``action`` raises is sent to every rank and raised there too, so a refusal
    (a run folder that may not be used, say) ends every rank with the same message instead of
    leaving the others waiting for rank 0 in their next collective.
    """
    result, error = None, None
    if context.is_main:
        try:
            result = action()
        except Exception as exc:  # every rank re-raises it below
            error = exc
    if context.enabled:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise error
    return result


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()


def fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of every entry of ``module.state_dict()`` (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
