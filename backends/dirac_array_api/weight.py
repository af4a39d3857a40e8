"""The Dirac tensor, filter normalization and ``W_hat = alpha * delta + beta * normalize(W)``
(paper eq. 2, 7-8, 13) with their VJPs, in standard Array API functions only.

Same maths as :mod:`dirac_core.normalize` and :mod:`dirac_core.weight`: each filter is scaled
by its max-abs before squaring, so no finite input overflows or underflows, the clamp branch
is ``v / eps`` below ``eps``, and half inputs are computed in float32. Without in-place updates
the Dirac tensor is built as a product of broadcast indicator vectors.
"""

from __future__ import annotations

from math import prod
from types import ModuleType
from typing import Any

from array_api_compat import device

from .namespace import eps_in, namespace, to_work, work_dtype


def dirac_tensor(
    xp: ModuleType, shape: tuple[int, ...], groups: int, policy: str, dtype: Any,
    device: Any = None,
) -> Any:
    """``delta[o, i, c] = mask[o, i]`` at ``c = (floor(K1/2), ...)``, else 0.

    ``mask`` is ``o' == i`` for ``policy="min"`` and ``o' % n == i % n`` for ``"tile"``, with
    ``o' = o % (O/groups)`` and ``n = min(O/groups, I/groups)``; the tensor is ``mask`` times
    one indicator vector of the centre per spatial axis.
    """
    out_channels, in_per_group, *kernel = shape
    per_group = out_channels // groups
    local = xp.arange(out_channels, device=device)[:, None] % per_group
    inputs = xp.arange(in_per_group, device=device)[None, :]
    if policy == "tile":
        n = min(per_group, in_per_group)
        local, inputs = local % n, inputs % n
    delta = xp.reshape(xp.astype(local == inputs, dtype), (out_channels, in_per_group)
                       + (1,) * len(kernel))
    for axis, size in enumerate(kernel):
        centre = xp.astype(xp.arange(size, device=device) == size // 2, dtype)
        delta = delta * xp.reshape(centre, tuple(size if a == axis else 1
                                                 for a in range(-2, len(kernel))))
    return delta


def _rows(xp: ModuleType, w: Any) -> tuple[Any, Any, Any, Any]:
    """``(flat, scale, scaled, scaled_norm)``: ``w`` as ``(O, n)`` rows in the working dtype,
    each row's max-abs ``(O, 1)``, the rows divided by it, and their norms."""
    flat = xp.reshape(to_work(xp, w), (w.shape[0], prod(w.shape[1:])))
    scale = xp.max(xp.abs(flat), axis=1, keepdims=True)
    # ``== 0``, not ``> 0``: a NaN or inf max-abs must reach every entry (NaN throughout).
    scaled = flat / xp.where(scale == 0, 1.0, scale)
    scaled_norm = xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))
    return flat, scale, scaled, scaled_norm


def _clamped(xp: ModuleType, scale: Any, scaled_norm: Any, eps: float) -> Any:
    """``||v|| < eps`` without forming ``||v||`` (it may overflow): ``||v|| >= max|v|``, so
    only rows with ``scale < eps`` can be below the clamp."""
    small = scale < eps
    return small & (xp.where(small, scale, 0.0) * scaled_norm < eps)


def normalize_filters(w: Any, eps: float, *, subnormals: bool = True) -> Any:
    """``v / max(||v||, eps)`` for each filter ``v = w[o]``, in ``w``'s dtype; zeros stay 0."""
    xp = namespace(w)
    return normalized(w, eps_in(xp, work_dtype(xp, w.dtype), eps, subnormals=subnormals))


def normalize_filters_vjp(g: Any, w: Any, eps: float, *, subnormals: bool = True) -> Any:
    """The VJP of :func:`normalize_filters`: ``dw`` (see :func:`normalized_vjp`)."""
    xp = namespace(g, w)
    return normalized_vjp(g, w, eps_in(xp, work_dtype(xp, w.dtype), eps, subnormals=subnormals))


def normalized(w: Any, eps: Any) -> Any:
    """:func:`normalize_filters` for an ``eps`` already in range (see :func:`eps_in`): a
    number or a 0-d array of the working dtype, so a compiled caller may pass it as data."""
    xp = namespace(w)
    flat, scale, scaled, scaled_norm = _rows(xp, w)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    unit = scaled / xp.where(scaled_norm == 0, 1.0, scaled_norm)
    # Mask before dividing: the branch not taken must not overflow either.
    out = xp.where(clamped, xp.where(clamped, flat, 0.0) / eps, unit)
    return xp.astype(xp.reshape(out, w.shape), w.dtype)


def normalized_vjp(g: Any, w: Any, eps: Any) -> Any:
    """``dv = (g - u <u, g>) / ||v||`` above the clamp (``u = v / ||v||``), ``g / eps`` below;
    ``g`` and ``v`` are each scaled by their max-abs first so nothing overflows. ``eps`` as for
    :func:`normalized`."""
    xp = namespace(g, w)
    flat, scale, scaled, scaled_norm = _rows(xp, w)
    grad = xp.reshape(xp.astype(g, flat.dtype), flat.shape)
    clamped = _clamped(xp, scale, scaled_norm, eps)
    safe_norm = xp.where(scaled_norm == 0, 1.0, scaled_norm)
    unit = scaled / safe_norm
    g_scale = xp.max(xp.abs(grad), axis=1, keepdims=True)
    g_unit = grad / xp.where(g_scale > 0, g_scale, 1.0)
    tangent = g_unit - unit * xp.sum(unit * g_unit, axis=1, keepdims=True)
    factor = g_scale / xp.where(clamped | (scale == 0), 1.0, scale)
    above = xp.where(tangent == 0, 0.0, tangent / safe_norm * factor)
    below = xp.where(clamped, grad, 0.0) / eps
    out = xp.where(clamped, below, above)
    return xp.astype(xp.reshape(out, w.shape), w.dtype)


def _per_channel(xp: ModuleType, scale: Any, ndim: int, dtype: Any) -> Any:
    """A 0-d or ``(O,)`` scale in ``dtype``, broadcasting over ``(O, ...)``."""
    scale = xp.astype(scale, dtype)
    return xp.reshape(scale, (-1,) + (1,) * (ndim - 1)) if scale.ndim else scale


def _reduce_to(xp: ModuleType, full: Any, like: Any) -> Any:
    """``full`` (shape ``(O, ...)``) summed to ``like``'s shape, ``()`` or ``(O,)``, and dtype."""
    rows = xp.sum(xp.reshape(full, (full.shape[0], -1)), axis=1)
    # asarray: NumPy's full reduction returns a scalar, not a 0-d array.
    return xp.astype(xp.asarray(xp.sum(rows)) if like.ndim == 0 else rows, like.dtype)


def dirac_weight(w: Any, alpha: Any, beta: Any, eps: float, normalize: bool, groups: int,
                 policy: str, *, subnormals: bool = True) -> Any:
    """``alpha * delta + beta * normalize(W)`` in ``w``'s dtype, scales per output channel."""
    xp = namespace(w, alpha, beta)
    return combine(w, alpha, beta, *_delta_eps(xp, w, groups, policy, eps, subnormals),
                   normalize)


def dirac_weight_vjp(g: Any, w: Any, alpha: Any, beta: Any, eps: float, normalize: bool,
                     groups: int, policy: str, *, subnormals: bool = True
                     ) -> tuple[Any, Any, Any]:
    """``(dW, dalpha, dbeta)``: ``dalpha = sum g*delta``, ``dbeta = sum g*normalize(W)``, each
    in its argument's shape and dtype, and ``dW = normalize_vjp(beta * g, W)``."""
    xp = namespace(g, w, alpha, beta)
    return combine_vjp(g, w, alpha, beta, *_delta_eps(xp, w, groups, policy, eps, subnormals),
                       normalize)


def _delta_eps(xp: ModuleType, w: Any, groups: int, policy: str, eps: float,
               subnormals: bool) -> tuple[Any, float]:
    """The Dirac tensor of ``w``'s shape and ``eps`` in range, both in the working dtype."""
    work = work_dtype(xp, w.dtype)
    delta = dirac_tensor(xp, tuple(w.shape), groups, policy, work, device(w))
    return delta, eps_in(xp, work, eps, subnormals=subnormals)


def _direction(xp: ModuleType, w: Any, eps: Any, normalize: bool) -> Any:
    work = to_work(xp, w)
    return normalized(work, eps) if normalize else work


def combine(w: Any, alpha: Any, beta: Any, delta: Any, eps: Any, normalize: bool) -> Any:
    """:func:`dirac_weight` with ``delta`` given (working dtype, ``w``'s shape) and ``eps`` in
    range: the form a compiled caller uses, with any ``w`` whose rows are the filters."""
    xp = namespace(w, alpha, beta, delta)
    a = _per_channel(xp, alpha, w.ndim, delta.dtype)
    b = _per_channel(xp, beta, w.ndim, delta.dtype)
    return xp.astype(a * delta + b * _direction(xp, w, eps, normalize), w.dtype)


def combine_vjp(g: Any, w: Any, alpha: Any, beta: Any, delta: Any, eps: Any, normalize: bool
                ) -> tuple[Any, Any, Any]:
    """:func:`dirac_weight_vjp` with ``delta`` and ``eps`` as for :func:`combine`."""
    xp = namespace(g, w, alpha, beta, delta)
    grad = xp.astype(g, delta.dtype)
    scaled = _per_channel(xp, beta, w.ndim, delta.dtype) * grad
    dw = normalized_vjp(scaled, to_work(xp, w), eps) if normalize else scaled
    return (xp.astype(dw, w.dtype), _reduce_to(xp, grad * delta, alpha),
            _reduce_to(xp, grad * _direction(xp, w, eps, normalize), beta))
