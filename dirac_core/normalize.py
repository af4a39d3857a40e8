"""Filter normalization: each output filter divided by its L2 norm (paper eq. 13), its VJP,
and the rule for ``eps`` in a working dtype (:func:`working_eps`, the one every backend uses).

Written against the Array API standard (:mod:`.xp`): the same lines run on NumPy (the
reference), on CuPy, JAX, PyTorch or any namespace ``array-api-compat`` knows.
"""

from __future__ import annotations

from math import prod
from types import ModuleType
from typing import Any

import numpy as np

from .backend import Array
from .validation import dtype_name
from .xp import device_of, namespace, work_dtype


def working_eps(eps: float, dtype: Any, *, subnormals: bool = True) -> float:
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
        The working dtype, ``float32`` or ``float64``, as a name or any library's dtype object.
    subnormals : bool
        With ``False`` the floor is the smallest *normal* number, for arithmetic that flushes
        subnormals to zero (XLA on CPU): there a subnormal ``eps`` would divide by zero.

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
    >>> working_eps(1e-50, "float32", subnormals=False) == float(np.finfo(np.float32).tiny)
    True
    """
    info = np.finfo(dtype_name(dtype))
    floor = info.smallest_subnormal if subnormals else info.smallest_normal
    clamped = min(max(eps, float(floor)), float(info.max))
    return float(info.dtype.type(clamped))


def _filters(w: Array) -> tuple[ModuleType, Array, Array, Array, Array]:
    """``w`` as ``(O, n)`` rows in the working dtype, with each row's max-abs ``(O, 1)``.

    Scaling by the max-abs before squaring keeps the sum of squares finite and normal for any
    finite input: 1e200 or 1e-200 in float64, 6e4 in float16.
    """
    xp = namespace(w)
    work = xp.astype(w, work_dtype(w.dtype, xp), copy=False)
    flat = xp.reshape(work, (w.shape[0], prod(w.shape[1:])))
    scale = xp.max(xp.abs(flat), axis=1, keepdims=True) if flat.shape[1] else xp.zeros(
        (flat.shape[0], 1), dtype=flat.dtype, device=device_of(w)
    )
    # ``== 0``, not ``> 0``: a NaN or inf max-abs must reach every entry (NaN throughout).
    scaled = flat / xp.where(scale == 0, 1.0, scale)
    scaled_norm = xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))
    return xp, flat, scale, scaled, scaled_norm


def _clamped(xp: ModuleType, scale: Array, scaled_norm: Array, eps: Any) -> Array:
    """``||v|| < eps``, decided without forming ``||v||`` for large filters (it may overflow):
    ``||v|| >= max|v| = scale``, so only filters with ``scale < eps`` can be below the clamp."""
    small = scale < eps
    return small & (xp.where(small, scale, 0.0) * scaled_norm < eps)


def normalized(w: Array, eps: Any) -> Array:
    """``v / max(||v||, eps)`` for each filter ``v = w[o]``, in ``w``'s dtype; zeros stay zeros.

    ``eps`` is already in range (:func:`working_eps` of the working dtype): a number, or a
    0-d array of the working dtype so that a compiled caller may pass it as data.
    ``||v|| = scale * ||v / scale||`` with ``scale = max|v|``. Above the clamp the result is
    ``(v / scale) / ||v / scale||``, which cannot overflow; below it, ``v / eps``.
    """
    xp, flat, scale, scaled, scaled_norm = _filters(w)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    unit = scaled / xp.where(scaled_norm == 0, 1.0, scaled_norm)
    # Mask before dividing: the branch not taken must not overflow either.
    out = xp.where(clamped, xp.where(clamped, flat, 0.0) / eps, unit)
    return xp.reshape(xp.astype(out, w.dtype, copy=False), w.shape)


def normalized_vjp(g: Array, w: Array, eps: Any) -> Array:
    """``dv = (g - u <u, g>) / ||v||`` above the clamp (``u = v / ||v||``), ``g / eps`` below;
    ``eps`` as for :func:`normalized`.

    Both ``v`` and ``g`` are scaled by their max-abs first, so neither ``<u, g>`` nor the
    division by ``||v|| = scale * ||v / scale||`` overflows for finite inputs. This is the
    derivative of ``v / max(||v||, eps)`` with the clamp's branch chosen like a clamp-min
    (norm branch when ``||v|| >= eps``).
    """
    xp, flat, scale, scaled, scaled_norm = _filters(w)
    grad = xp.reshape(xp.astype(g, flat.dtype, copy=False), flat.shape)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    safe_norm = xp.where(scaled_norm == 0, 1.0, scaled_norm)
    unit = scaled / safe_norm
    g_scale = xp.max(xp.abs(grad), axis=1, keepdims=True)
    g_unit = grad / xp.where(g_scale > 0, g_scale, 1.0)
    tangent = g_unit - unit * xp.sum(unit * g_unit, axis=1, keepdims=True)
    factor = g_scale / xp.where(clamped | (scale == 0), 1.0, scale)
    above = xp.where(tangent == 0, 0.0, tangent / safe_norm * factor)
    # Below the clamp ``g / eps`` may exceed the working (or the input) dtype's range: a
    # correctly signed inf is the spec's result there, not an accident to warn about.
    with np.errstate(over="ignore"):
        below = xp.where(clamped, grad, 0.0) / eps
        out = xp.where(clamped, below, above)
        return xp.reshape(xp.astype(out, w.dtype, copy=False), w.shape)


def normalize_filters(w: Array, eps: float, *, subnormals: bool = True) -> Array:
    """:func:`normalized` with ``eps`` taken by :func:`working_eps` in ``w``'s working dtype."""
    work = work_dtype(w.dtype, namespace(w))
    return normalized(w, working_eps(eps, work, subnormals=subnormals))


def normalize_filters_vjp(g: Array, w: Array, eps: float, *, subnormals: bool = True) -> Array:
    """:func:`normalized_vjp` with ``eps`` taken by :func:`working_eps`."""
    work = work_dtype(w.dtype, namespace(g, w))
    return normalized_vjp(g, w, working_eps(eps, work, subnormals=subnormals))
