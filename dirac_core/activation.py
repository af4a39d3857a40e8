"""NCReLU: ``concat([max(x, 0), min(x, 0)])`` along the channel axis (paper eq. 10)."""

from __future__ import annotations

from .backend import Array
from .xp import array_module


def ncrelu(x: Array, axis: int) -> Array:
    """Positive and negative parts of ``x``, concatenated along ``axis``."""
    xp = array_module(x)
    zero = xp.zeros((), dtype=x.dtype)
    return xp.concatenate([xp.maximum(x, zero), xp.minimum(x, zero)], axis=axis)


def ncrelu_vjp(g: Array, x: Array, axis: int) -> Array:
    """``g_pos * [x > 0] + g_neg * [x < 0]``: at exactly zero both halves pass nothing."""
    xp = array_module(g, x)
    positive, negative = xp.split(g, 2, axis=axis)
    zero = xp.zeros((), dtype=g.dtype)
    return xp.where(x > 0, positive, zero) + xp.where(x < 0, negative, zero)
