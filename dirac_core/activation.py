"""NCReLU: ``concat([max(x, 0), min(x, 0)])`` along the channel axis (paper eq. 10), and its
VJP, written against the Array API standard (:mod:`.xp`).

Both are selections, never ``maximum``/``minimum`` or sums: the sign those give at a zero
differs between libraries and dtypes (NumPy's ``minimum(-0.0, 0.0)`` is ``+0.0`` in float32
and ``-0.0`` in float16), so a select fixes it for every backend: both halves of a zero of
either sign are ``+0.0``, and a gradient entry is the cotangent's own, signed zero included.

Every comparison is made on ``signs``, an array ordered against zero as ``x`` is (``x``
itself by default): a backend whose arithmetic reads subnormal operands as zero hands one in
which no entry is subnormal (:func:`dirac_jax.subnormal.sign_proxy`), and the values
selected are still ``x``'s and ``g``'s own bits.
"""

from __future__ import annotations

from .backend import Array
from .xp import device_of, namespace


def ncrelu(x: Array, axis: int, signs: Array | None = None) -> Array:
    """Positive and negative parts of ``x``, concatenated along ``axis``; a NaN reaches both,
    a zero of either sign gives ``+0.0`` in both. ``signs``: compared in ``x``'s place."""
    xp = namespace(x)
    s = x if signs is None else signs
    zero = xp.zeros((), dtype=x.dtype, device=device_of(x))
    return xp.concat([xp.where(s <= 0, zero, x), xp.where(s >= 0, zero, x)], axis=axis)


def ncrelu_vjp(g: Array, x: Array, axis: int, signs: Array | None = None) -> Array:
    """``g_pos`` where ``x > 0``, ``g_neg`` where ``x < 0``, ``+0.0`` elsewhere (a zero, a
    NaN). ``signs``: compared in ``x``'s place."""
    xp = namespace(g, x)
    s = x if signs is None else signs
    half = g.shape[axis] // 2
    before = (slice(None),) * (axis % g.ndim)
    positive = g[(*before, slice(0, half), ...)]
    negative = g[(*before, slice(half, None), ...)]
    zero = xp.zeros((), dtype=g.dtype, device=device_of(g))
    return xp.where(s > 0, positive, xp.where(s < 0, negative, zero))
