"""Filter normalization: each output filter divided by its L2 norm (paper eq. 13)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .backend import Array
from .xp import array_module, work_dtype


def working_eps(eps: float, dtype: Any) -> float:
    """``eps`` as the spec takes it in a working dtype: rounded to ``dtype`` and kept inside
    its positive finite range, so that neither the comparison with a norm nor the division by
    it can overflow to inf or round to zero.

    Every backend applies this rule (``eps = 1e-50`` acts as float32's smallest subnormal,
    ``1e300`` as float32's largest finite number).

    Parameters
    ----------
    eps : float
        The clamp, > 0 (any finite value the API accepts).
    dtype : dtype or str
        The working dtype (``"float32"`` or ``"float64"``; any NumPy floating dtype).

    Returns
    -------
    float
        A positive finite value exactly representable in ``dtype``.

    Examples
    --------
    >>> working_eps(1e-50, "float32") == float(np.finfo(np.float32).smallest_subnormal)
    True
    >>> working_eps(1e300, "float32") == float(np.finfo(np.float32).max)
    True
    """
    info = np.finfo(dtype)
    clamped = min(max(eps, float(info.smallest_subnormal)), float(info.max))
    return float(np.dtype(dtype).type(clamped))


def _eps_in(dtype: Any, eps: float) -> Any:
    """:func:`working_eps` as a scalar of ``dtype``."""
    return dtype.type(working_eps(eps, dtype))


def _filters(w: Array) -> tuple[ModuleType, Array, Array, Array, Array]:
    """``w`` as ``(O, n)`` rows in the working dtype, with each row's max-abs ``(O, 1)``.

    Scaling by the max-abs before squaring keeps the sum of squares finite and normal for any
    finite input: 1e200 or 1e-200 in float64, 6e4 in float16.
    """
    xp = array_module(w)
    flat = w.astype(work_dtype(w.dtype), copy=False).reshape(w.shape[0], -1)
    scale = xp.max(xp.abs(flat), axis=1, keepdims=True) if flat.shape[1] else xp.zeros(
        (flat.shape[0], 1), flat.dtype
    )
    # ``== 0``, not ``> 0``: a NaN or inf max-abs must reach every entry (NaN throughout).
    scaled = flat / xp.where(scale == 0, 1, scale)
    scaled_norm = xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))
    return xp, flat, scale, scaled, scaled_norm


def _clamped(xp: ModuleType, scale: Array, scaled_norm: Array, eps: float) -> Array:
    """``||v|| < eps``, decided without forming ``||v||`` for large filters (it may overflow):
    ``||v|| >= max|v| = scale``, so only filters with ``scale < eps`` can be below the clamp."""
    eps = _eps_in(scale.dtype, eps)
    small = scale < eps
    return small & (xp.where(small, scale, 0) * scaled_norm < eps)


def normalize_filters(w: Array, eps: float) -> Array:
    """``v / max(||v||, eps)`` for each filter ``v = w[o]``; zeros stay zeros.

    ``||v|| = scale * ||v / scale||`` with ``scale = max|v|``. Above the clamp the result is
    ``(v / scale) / ||v / scale||``, which cannot overflow; below it, ``v / eps``.
    """
    xp, flat, scale, scaled, scaled_norm = _filters(w)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    unit = scaled / xp.where(scaled_norm == 0, 1, scaled_norm)
    # Mask before dividing: the branch not taken must not overflow either.
    out = xp.where(clamped, xp.where(clamped, flat, 0) / _eps_in(flat.dtype, eps), unit)
    return out.astype(w.dtype, copy=False).reshape(w.shape)


def normalize_filters_vjp(g: Array, w: Array, eps: float) -> Array:
    """``dv = (g - u <u, g>) / ||v||`` above the clamp (``u = v / ||v||``), ``g / eps`` below.

    Both ``v`` and ``g`` are scaled by their max-abs first, so neither ``<u, g>`` nor the
    division by ``||v|| = scale * ||v / scale||`` overflows for finite inputs. This is the
    derivative of ``v / max(||v||, eps)`` with the clamp's branch chosen like a clamp-min
    (norm branch when ``||v|| >= eps``).
    """
    xp, flat, scale, scaled, scaled_norm = _filters(w)
    grad = g.astype(flat.dtype, copy=False).reshape(flat.shape)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    safe_norm = xp.where(scaled_norm == 0, 1, scaled_norm)
    unit = scaled / safe_norm
    g_scale = xp.max(xp.abs(grad), axis=1, keepdims=True)
    g_unit = grad / xp.where(g_scale > 0, g_scale, 1)
    tangent = g_unit - unit * xp.sum(unit * g_unit, axis=1, keepdims=True)
    factor = g_scale / xp.where(clamped | (scale == 0), 1, scale)
    above = xp.where(tangent == 0, 0, tangent / safe_norm * factor)
    below = xp.where(clamped, grad, 0) / _eps_in(flat.dtype, eps)
    out = xp.where(clamped, below, above)
    return out.astype(w.dtype, copy=False).reshape(w.shape)
