"""Batch norm over the global batch of a data-parallel run (``--sync-bn``).

Under ``torchrun`` each rank holds ``batch / world`` examples; a plain ``BatchNorm`` normalises
them with their own statistics, so a distributed run trains a different network from one
process with the whole batch. :func:`synchronize_batchnorm` makes every batch norm of a model
compute its training statistics over the examples of all ranks (and back-propagate through
them), so that ``world`` ranks with ``batch / world`` examples each take the very step of one
process with ``batch`` examples, up to float32 round-off.

Unlike :class:`torch.nn.SyncBatchNorm` (CUDA only, and a module of another class), this works
on gloo (CPU) and NCCL alike and keeps each module an instance of its own class, so folding,
saving and loading see ordinary batch norms. Evaluation mode is unchanged, and
:func:`desynchronize_batchnorm` gives the modules their own class back (the trainer does so
when training ends, before the network is folded).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

_SYNCED: dict[type, type] = {}


class _Summed(torch.autograd.Function):
    """The sum over ranks of a tensor; every rank's output depends on every rank's input, so
    the gradient is the sum over ranks too."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return _Summed.apply(grad)


def summed(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over the ranks."""
    return _Summed.apply(tensor)  # type: ignore[no-any-return]


def _synced_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training: statistics of the global batch (two differentiable all-reduces, whose
    backward sums the gradients of every rank); evaluation: the module's own forward."""
    if not (self.training and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1):
        return super(_SYNCED[type(self)], self).forward(x)
    dims = [0, *range(2, x.dim())]
    values = x.to(torch.promote_types(x.dtype, torch.float32))  # float16 sums in float32
    local = torch.tensor([values.numel() / values.shape[1]], dtype=values.dtype,
                         device=x.device)
    count = summed(local)
    mean = summed(values.sum(dims)) / count
    shape = [1, -1] + [1] * (x.dim() - 2)
    centred = values - mean.view(shape)
    var = summed((centred * centred).sum(dims)) / count  # biased, as BN normalises
    if self.track_running_stats:
        self._update_running(mean.detach(), var.detach() * count / (count - 1))
    out = centred * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        out = out * self.weight.view(shape) + self.bias.view(shape)
    return out.to(x.dtype)


def _update_running(self: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                    var: torch.Tensor) -> None:
    """The running averages ``BatchNorm`` keeps (momentum, or a cumulative average when the
    momentum is None), from the global batch's mean and unbiased variance."""
    with torch.no_grad():
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(var.to(self.running_var.dtype), factor)


def synchronize_batchnorm(model: nn.Module) -> int:
    """Make every batch norm of ``model`` normalise over the global batch while training.

    Each module keeps its parameters, buffers and (a subclass of) its class, so it is changed
    in place and can be done before or after the optimizer is built. In a single process
    (no process group) the modules compute exactly what they did.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    int
        The number of batch norms changed.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    >>> synchronize_batchnorm(net), isinstance(net[1], nn.BatchNorm2d)
    (1, True)
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) \
                and type(module) not in _SYNCED.values():
            module.__class__ = _synced_class(type(module))
            changed += 1
    return changed


def desynchronize_batchnorm(model: nn.Module) -> int:
    """Undo :func:`synchronize_batchnorm`: each batch norm of ``model`` is again an instance of
    its own class (what folding and exporting expect), parameters and buffers untouched.

    Returns
    -------
    int
        The number of batch norms changed back.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    >>> synchronize_batchnorm(net), desynchronize_batchnorm(net), type(net[1]) is nn.BatchNorm2d
    (1, 1, True)
    """
    changed = 0
    for module in model.modules():
        if type(module) in _SYNCED.values():
            module.__class__ = type(module).__bases__[0]
            changed += 1
    return changed


def _synced_class(base: type) -> type:
    if base not in _SYNCED:
        synced = type(f"Synced{base.__name__}", (base,), {
            "forward": _synced_forward, "_update_running": _update_running,
            "__module__": __name__})
        _SYNCED[base] = synced
        _SYNCED[synced] = synced
    return _SYNCED[base]
