"""Folding an eval-mode batch norm into the convolution before it (Array API standard)."""

from __future__ import annotations

import numpy as np

from .backend import Array
from .xp import device_of, namespace, work_dtype


def fold_batchnorm(
    weight: Array, bias: Array | None, gamma: Array, beta: Array, mean: Array, var: Array,
    eps: float | Array,
) -> tuple[Array, Array]:
    """``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.

    ``BN(conv(x, W) + b) = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta``, and
    conv is linear in ``W``, so the per-channel factor moves into the weight. The arithmetic runs
    in at least float32 (``eps`` rounded to that dtype: beyond its range it is inf); the
    results have the weight's dtype.
    """
    xp = namespace(weight, bias, gamma, beta, mean, var)
    dtype = work_dtype(weight.dtype, xp)
    with np.errstate(over="ignore"):  # beyond float32's range eps is inf by the spec: s = 0
        eps_in = xp.asarray(eps, dtype=dtype, device=device_of(weight))
    scale = xp.astype(gamma, dtype) / xp.sqrt(xp.astype(var, dtype) + eps_in)
    mean_in = xp.astype(mean, dtype)
    shift = -mean_in if bias is None else xp.astype(bias, dtype) - mean_in
    new_weight = xp.astype(weight, dtype) * xp.reshape(scale, (-1,) + (1,) * (weight.ndim - 1))
    new_bias = shift * scale + xp.astype(beta, dtype)
    return xp.astype(new_weight, weight.dtype), xp.astype(new_bias, weight.dtype)
