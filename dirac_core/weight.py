"""The Dirac parameterization ``W_hat = alpha * delta + beta * normalize(W)`` (paper eq. 13)."""

from __future__ import annotations

from typing import Any

from .backend import Array
from .delta import dirac_tensor
from .normalize import normalize_filters, normalize_filters_vjp
from .xp import array_module, work_dtype


def _per_channel(scale: Array, ndim: int, dtype: Any) -> Array:
    """A 0-d or ``(O,)`` scale as an array broadcasting over ``(O, ...)``."""
    scale = scale.astype(dtype, copy=False)
    return scale.reshape((-1,) + (1,) * (ndim - 1)) if scale.ndim else scale


def _reduce_to(full: Array, like: Array) -> Array:
    """Sum ``full`` (shape ``(O, ...)``) down to ``like``'s shape: ``()`` or ``(O,)``."""
    if like.ndim == 0:
        return array_module(full).asarray(full.sum())
    return full.reshape(full.shape[0], -1).sum(axis=1)


def _terms(
    w: Array, eps: float, normalize: bool, groups: int, policy: str
) -> tuple[Any, Array, Array]:
    """The working dtype, ``delta`` and ``normalize(W)`` (or ``W``) in that dtype."""
    xp = array_module(w)
    dtype = work_dtype(w.dtype)
    delta = dirac_tensor(w.shape, groups, policy, dtype, xp)
    direction = normalize_filters(w.astype(dtype), eps) if normalize else w.astype(dtype)
    return dtype, delta, direction


def dirac_weight(
    w: Array, alpha: Array, beta: Array, eps: float, normalize: bool, groups: int, policy: str
) -> Array:
    """``alpha * delta + beta * normalize(W)``, scales broadcast per output channel."""
    dtype, delta, direction = _terms(w, eps, normalize, groups, policy)
    a = _per_channel(alpha, w.ndim, dtype)
    b = _per_channel(beta, w.ndim, dtype)
    return (a * delta + b * direction).astype(w.dtype, copy=False)


def dirac_weight_vjp(
    g: Array, w: Array, alpha: Array, beta: Array, eps: float, normalize: bool, groups: int,
    policy: str,
) -> tuple[Array, Array, Array]:
    """``(dW, dalpha, dbeta)`` with ``dalpha = sum g*delta``, ``dbeta = sum g*normalize(W)``
    (each reduced to its argument's shape and dtype) and ``dW = normalize_vjp(beta * g, W)``."""
    dtype, delta, direction = _terms(w, eps, normalize, groups, policy)
    grad = g.astype(dtype, copy=False)
    b = _per_channel(beta, w.ndim, dtype)
    dalpha = _reduce_to(grad * delta, alpha)
    dbeta = _reduce_to(grad * direction, beta)
    scaled = b * grad
    dw = normalize_filters_vjp(scaled, w.astype(dtype), eps) if normalize else scaled
    # Each gradient takes its argument's dtype, as autograd does: a float32 alpha of a half
    # weight keeps a float32 gradient, whose sum over a whole filter bank would overflow half.
    return dw.astype(w.dtype, copy=False), dalpha.astype(alpha.dtype), dbeta.astype(beta.dtype)
