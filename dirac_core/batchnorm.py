"""Folding an eval-mode batch norm into the convolution before it."""

from __future__ import annotations

from .backend import Array
from .xp import array_module, work_dtype


def fold_batchnorm(
    weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array, var: Array,
    eps: float,
) -> tuple[Array, Array]:
    """``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.

    ``BN(conv(x, W) + b) = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta``, and
    conv is linear in ``W``, so the per-channel factor moves into the weight. The arithmetic runs
    in at least float32; the results have the weight's dtype.
    """
    xp = array_module(weight)
    dtype = work_dtype(weight.dtype)
    scale = gamma.astype(dtype) / xp.sqrt(var.astype(dtype) + dtype.type(eps))
    shift = -mean.astype(dtype) if bias is None else bias.astype(dtype) - mean.astype(dtype)
    new_weight = weight.astype(dtype) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    new_bias = shift * scale + beta.astype(dtype)
    return new_weight.astype(weight.dtype), new_bias.astype(weight.dtype)
