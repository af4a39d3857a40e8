"""NCReLU: ``concat([max(x, 0), min(x, 0)])`` along the channel axis (paper eq. 10), and its
VJP, written against the Array API standard (:mod:`.xp`)."""

from __future__ import annotations

from .backend import Array
from .xp import device_of, namespace


def ncrelu(x: Array, axis: int) -> Array:
    """Positive and negative parts of ``x``, concatenated along ``axis``; a NaN reaches both."""
    xp = namespace(x)
    zero = xp.zeros((), dtype=x.dtype, device=device_of(x))
    return xp.concat([xp.maximum(x, zero), xp.minimum(x, zero)], axis=axis)


def ncrelu_vjp(g: Array, x: Array, axis: int) -> Array:
    """``g_pos * [x > 0] + g_neg * [x < 0]``: at exactly zero both halves pass nothing."""
    xp = namespace(g, x)
    half = g.shape[axis] // 2
    before = (slice(None),) * (axis % g.ndim)
    positive = g[(*before, slice(0, half), ...)]
    negative = g[(*before, slice(half, None), ...)]
    zero = xp.zeros((), dtype=g.dtype, device=device_of(g))
    return xp.where(x > 0, positive, zero) + xp.where(x < 0, negative, zero)
