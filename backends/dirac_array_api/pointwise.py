"""NCReLU (paper eq. 10) with its VJP, and batch-norm folding, in standard functions."""

from __future__ import annotations

from typing import Any

from .namespace import namespace, to_work


def _along(axis: int, ndim: int, index: slice) -> tuple[slice, ...]:
    return tuple(index if a == axis else slice(None) for a in range(ndim))


def ncrelu(x: Any, axis: int) -> Any:
    """``concat([max(x, 0), min(x, 0)], axis)``; a NaN propagates to both halves."""
    xp = namespace(x)
    return xp.concat([xp.where(x <= 0, 0.0, x), xp.where(x >= 0, 0.0, x)], axis=axis)


def ncrelu_vjp(g: Any, x: Any, axis: int) -> Any:
    """``g_pos * [x > 0] + g_neg * [x < 0]``: at exactly zero both halves pass nothing."""
    xp = namespace(g, x)
    half = g.shape[axis] // 2
    positive = g[_along(axis, g.ndim, slice(0, half))]
    negative = g[_along(axis, g.ndim, slice(half, None))]
    return xp.where(x > 0, positive, 0.0) + xp.where(x < 0, negative, 0.0)


def fold_batchnorm(weight: Any, bias: Any, gamma: Any, beta: Any, mean: Any, var: Any,
                   eps: float) -> tuple[Any, Any]:
    """``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``,
    computed in at least float32, returned in the weight's dtype."""
    xp = namespace(weight, bias, gamma, beta, mean, var)
    scale = to_work(xp, gamma) / xp.sqrt(to_work(xp, var) + eps)
    shift = -to_work(xp, mean) if bias is None else to_work(xp, bias) - to_work(xp, mean)
    per_row = xp.reshape(scale, (-1,) + (1,) * (weight.ndim - 1))
    new_weight = to_work(xp, weight) * per_row
    new_bias = shift * scale + to_work(xp, beta)
    return xp.astype(new_weight, weight.dtype), xp.astype(new_bias, weight.dtype)
